"""Assistance API URLs (``api_urlpatterns``, mounted under /api/ by ``omnirouter.urls``)."""

from django.urls import path

from assist import api

api_urlpatterns = [
    path("assist/train/", api.TrainView.as_view(), name="assist-train"),
    path(
        "work-items/<int:item_id>/prediction/",
        api.PredictionView.as_view(),
        name="assist-prediction",
    ),
    path(
        "work-items/<int:item_id>/suggestions/",
        api.SuggestionsView.as_view(),
        name="assist-suggestions",
    ),
    path(
        "work-items/<int:item_id>/assist-feedback/",
        api.FeedbackView.as_view(),
        name="assist-feedback",
    ),
]
