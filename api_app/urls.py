from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import token_views, views

app_name = "api"
urlpatterns = [
    path("tokens/", token_views.tokens, name="tokens"),
    path("tokens/<int:token_pk>/revoke/", token_views.revoke, name="token_revoke"),
    path("v1/models/", views.ModelList.as_view(), name="models"),
    path("v1/models/<int:run_pk>/", views.ModelDetail.as_view(), name="model"),
    path("v1/models/<int:run_pk>/download/", views.ModelDownload.as_view(), name="model_download"),
    path("v1/models/<int:run_pk>/exports/", views.ExportList.as_view(), name="exports"),
    path("v1/models/<int:run_pk>/exports/<str:kind>/", views.ExportMake.as_view(), name="export_make"),
    path("v1/models/<int:run_pk>/exports/<str:kind>/download/", views.ExportDownload.as_view(), name="export_download"),
    path("v1/models/<int:run_pk>/classify/", views.Classify.as_view(), name="classify"),
    path("v1/models/<int:run_pk>/classifications/", views.ClassificationStart.as_view(), name="classification_start"),
    path("v1/classifications/<int:classification_pk>/", views.ClassificationDetail.as_view(), name="classification"),
    path("v1/classifications/<int:classification_pk>/results/", views.ClassificationResults.as_view(),
         name="classification_results"),
    path("v1/datasets/", views.DatasetList.as_view(), name="datasets"),
    path("v1/datasets/<int:dataset_pk>/", views.DatasetDetail.as_view(), name="dataset"),
    path("v1/datasets/<int:dataset_pk>/runs/", views.RunStart.as_view(), name="run_start"),
    path("v1/runs/<int:run_pk>/", views.RunDetail.as_view(), name="run"),
    path("v1/tokens/", views.TokenList.as_view(), name="token_list"),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The docs page's script is a file of its own (the "split" view), so that it runs under the
    # site's Content-Security-Policy, which allows no inline script.
    path("v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api_app/swagger_ui.html"),
         name="docs"),
    re_path(r"^v1/", views.not_found, name="not_found"),  # last: any other address under the API answers JSON too
]
