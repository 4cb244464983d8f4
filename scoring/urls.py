from django.urls import path

from scoring import apis

urlpatterns = [
    path(
        "customers/<segment:external_id>/score",
        apis.CustomerScoreApi.as_view(),
        name="customer-score",
    ),
]
