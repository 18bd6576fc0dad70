from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers_app"
    verbose_name = "Providers"
