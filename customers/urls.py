from django.urls import path

from customers import apis

urlpatterns = [
    path("customers/bulk", apis.CustomersBulkApi.as_view(), name="customers-bulk"),
    path("orders/bulk", apis.OrdersBulkApi.as_view(), name="orders-bulk"),
    path("events/bulk", apis.EventsBulkApi.as_view(), name="events-bulk"),
    path(
        "customers/<segment:external_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"
    ),
    path(
        "customers/<segment:external_id>/consent",
        apis.CustomerConsentApi.as_view(),
        name="customer-consent",
    ),
    path(
        "customers/<segment:external_id>/devices",
        apis.CustomerDevicesApi.as_view(),
        name="customer-devices",
    ),
    path(
        "customers/<segment:external_id>/devices/<segment:device_id>",
        apis.CustomerDeviceDetailApi.as_view(),
        name="customer-device-detail",
    ),
    path(
        "customers/<segment:external_id>/erase",
        apis.CustomerEraseApi.as_view(),
        name="customer-erase",
    ),
    path(
        "customers/<segment:external_id>/export",
        apis.CustomerExportApi.as_view(),
        name="customer-export",
    ),
]
