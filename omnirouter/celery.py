"""The Celery app. Workers: ``celery -A omnirouter worker -Q routing,default``; the sweep:
``celery -A omnirouter beat``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnirouter.settings")

app = Celery("omnirouter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
