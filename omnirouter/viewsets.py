"""The shape every configuration endpoint shares: admin-only CRUD whose writes call services."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import viewsets
from rest_framework.serializers import BaseSerializer, ModelSerializer

from omnirouter.configuration import delete_configuration, save_configuration
from omnirouter.permissions import IsAdmin


def split_m2m(model: type[models.Model], data: dict[str, Any]) -> tuple[dict, dict]:
    """Validated data as (plain field changes, many-to-many values), as services take them."""
    m2m_names = {f.name for f in model._meta.get_fields() if f.many_to_many and f.concrete}
    plain = {k: v for k, v in data.items() if k not in m2m_names}
    m2m = {k: v for k, v in data.items() if k in m2m_names}
    return plain, m2m


class ConfigurationViewSet(viewsets.ModelViewSet):
    """Admin-only CRUD. Creates and edits go through ``save_configuration`` unless a subclass
    names a service with side effects; deletes of records in use answer 409 with what uses them.
    """

    permission_classes = [IsAdmin]

    def perform_create(self, serializer: BaseSerializer) -> None:
        assert isinstance(serializer, ModelSerializer)  # configuration endpoints edit one model
        model: type[models.Model] = serializer.Meta.model
        serializer.instance = self.create_object(model(), serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer) -> None:
        assert serializer.instance is not None  # an update always has the record it edits
        serializer.instance = self.update_object(serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance: models.Model) -> None:
        delete_configuration(instance=instance)

    def create_object(self, instance: models.Model, data: dict[str, Any]) -> models.Model:
        plain, m2m = split_m2m(type(instance), data)
        return save_configuration(instance=instance, changes=plain, m2m=m2m)

    def update_object(self, instance: models.Model, data: dict[str, Any]) -> models.Model:
        return self.create_object(instance, data)


def validated(serializer_class: type[BaseSerializer], data: Any, **context: Any) -> dict[str, Any]:
    """Validate request input with an input serializer; 400 with field errors otherwise."""
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
