"""Top-level URLs: admin, versioned API, OpenAPI schema and docs."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from campaigns import views as campaigns_views
from common.api import PathSegmentConverter, api_not_found
from retention.overview import overview_view

admin.site.site_header = "Retention service"
admin.site.site_title = "Retention service"
admin.site.index_title = "Customers, scores and campaigns"
# A refused admin page explains which role opens it instead of a bare "403 Forbidden".
handler403 = campaigns_views.permission_denied

# Before the apps' URLs are included: they name ids and codes as <segment:…>.
register_converter(PathSegmentConverter, "segment")

urlpatterns = [
    # The admin's landing page is the overview (before the admin's own index, which it replaces).
    path("admin/", admin.site.admin_view(overview_view), name="overview"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("scoring.urls")),
    path("api/v1/", include("customers.urls")),
    path("api/v1/", include("campaigns.urls")),
    path("unsubscribe/<str:token>", campaigns_views.unsubscribe, name="campaigns-unsubscribe"),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "api/docs/",
        # The split view serves its init script as a file: the CSP allows no inline script.
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[]
        ),
        name="api-docs",
    ),
    # Last: any other path under /api/ gets the API's JSON 404.
    re_path(r"^api/(?P<path>.*)$", api_not_found),
]

if settings.RETENTION_BENCH_ENDPOINTS:  # bench/api_load.py's reference; off unless set
    from retention.bench_views import reference_write

    urlpatterns.insert(0, path("bench/reference-write", reference_write))
