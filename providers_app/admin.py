from django import forms
from django.contrib import admin, messages

from archangel.admin_site import CappedCountPaginator
from archangel.audit.context import Entry, record
from archangel.errors import InvalidInput
from providers_app import services
from providers_app.config import SPECS
from providers_app.models import Provider, WebhookDelivery

ALL_SECRET_KEYS = sorted({key for spec in SPECS.values() for key in spec.secret})


def _secret_field(key: str) -> forms.CharField:
    return forms.CharField(
        label=key,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class _ProviderFormBase(forms.ModelForm):
    """Secrets are write-only: a blank field keeps the stored value, nothing is ever shown."""

    class Meta:
        model = Provider
        fields = ["name", "type", "config", "weight"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The model gives every row its UUID on construction, so ``pk`` is set on
        # the add page too; ``_state.adding`` is what tells a new provider apart.
        if self.instance._state.adding:
            return
        self.fields["type"].disabled = True
        status = self.instance.secrets_set()
        for key in ALL_SECRET_KEYS:
            if key in status:
                state = {True: "Set. ", False: "Not set. ", None: "Stored, but unreadable with the current keys. "}
                help_text = state[status[key]] + "Leave blank to keep the stored value."
            else:
                help_text = f"Not a setting of a {self.instance.type} provider."
            self.fields[f"secret_{key}"].help_text = help_text

    def clean(self):
        cleaned = super().clean()
        provider_type = cleaned.get("type") or self.instance.type
        if not provider_type:
            return cleaned
        config = dict(cleaned.get("config") or {})
        secret_keys = SPECS[provider_type].secret
        for key in ALL_SECRET_KEYS:
            value = cleaned.get(f"secret_{key}")
            if value and key not in secret_keys:
                self.add_error(f"secret_{key}", f"Not a setting of a {provider_type} provider.")
            elif value:
                config[key] = value
        cleaned["config"] = config
        try:
            services.provider_check_config(
                provider=None if self.instance._state.adding else self.instance,
                provider_type=provider_type,
                config=config,
                partial=False,
            )
        except InvalidInput as exc:
            for name, messages in exc.fields.items():
                key = name.removeprefix("config.")
                target = f"secret_{key}" if f"secret_{key}" in self.fields else "config"
                self.add_error(target, f"{key}: {messages[0]}" if target == "config" else messages[0])
        return cleaned


# One password field per secret key of any provider type, declared on the class so the admin
# renders them (a field added in __init__ is not in the admin's fieldsets).
ProviderForm = type(
    "ProviderForm", (_ProviderFormBase,), {f"secret_{key}": _secret_field(key) for key in ALL_SECRET_KEYS}
)


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "type", "health_status", "breaker", "budget", "weight", "updated_at"]
    list_filter = ["type", "health_status"]
    search_fields = ["name"]
    readonly_fields = ["health_status", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "type", "config", "weight", "health_status"]}),
        (
            "Secrets",
            {
                "description": "Write-only and encrypted at rest: a stored value is never shown. "
                "Fill in only the ones of this provider's type.",
                "fields": [f"secret_{key}" for key in ALL_SECRET_KEYS],
            },
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]
    actions = [
        "test_connection",
        "reset_breaker",
        "disable",
        "enable",
        "refresh_metadata",
        "register_webhooks",
        "unregister_webhooks",
    ]

    def get_queryset(self, request):
        self._breaker_states = None  # filled once per changelist, see breaker()
        return super().get_queryset(request)

    @admin.display(description="Breaker")
    def breaker(self, obj):
        from providers_app import breakers

        if self._breaker_states is None:
            ids = Provider.objects.values_list("id", flat=True)
            self._breaker_states = breakers.states(ids)  # one Redis round trip for the page
        return self._breaker_states.get(str(obj.id), "")

    @admin.display(description="Budget left")
    def budget(self, obj):
        from archangel.dashboard import budget_left

        return budget_left(obj)

    @admin.action(description="Test connection (a live health call within the rate budget)")
    def test_connection(self, request, queryset):
        from providers_app.status import live_check

        for provider in queryset:
            result = live_check(provider)
            if result.get("ok"):
                self.message_user(request, f"{provider.name}: OK in {result['latency_ms']} ms.", messages.SUCCESS)
            elif result.get("ok") is None:
                self.message_user(request, f"{provider.name}: not checked, {result['skipped']}.", messages.WARNING)
            else:
                detail = f"{result['code']} {result.get('status_code') or ''}: {result['error']}"
                self.message_user(request, f"{provider.name}: failed, {detail}", messages.ERROR)

    @admin.action(description="Reset breaker (close it now)")
    def reset_breaker(self, request, queryset):
        from providers_app import breakers

        for provider in queryset:
            breakers.reset(provider)
            record([Entry("reset_breaker", "providers_app.provider", str(provider.pk), provider.name)])
        self.message_user(request, f"Closed the breaker of {queryset.count()} provider(s).", messages.SUCCESS)

    @admin.action(description="Disable (no routing, deliveries wait)")
    def disable(self, request, queryset):
        self._set_health(request, queryset, Provider.Health.DISABLED)

    @admin.action(description="Enable (back to the health its breaker reports)")
    def enable(self, request, queryset):
        self._set_health(request, queryset, Provider.Health.ACTIVE)

    def _set_health(self, request, queryset, health):
        # Through the service, one save per provider: each is audited like any other edit.
        for provider in queryset:
            saved = services.provider_update(provider=provider, data={"health_status": health}, partial=True)
            self.message_user(request, f"{saved.name}: {saved.health_status}.", messages.SUCCESS)

    @admin.action(description="Refresh provider metadata (statuses, lists, labels, projects, user ids)")
    def refresh_metadata(self, request, queryset):
        for provider in queryset:
            services.provider_metadata_refresh(provider=provider)
            record([Entry("refresh_metadata", "providers_app.provider", str(provider.pk), provider.name)])
        self.message_user(
            request,
            f"Dropped the cached metadata of {queryset.count()} provider(s); their next deliveries read it afresh.",
            messages.SUCCESS,
        )

    @admin.action(description="Register webhooks (ClickUp, Trello) at ARCHANGEL_PUBLIC_URL")
    def register_webhooks(self, request, queryset):
        self._webhook_action(request, queryset, register=True)

    @admin.action(description="Unregister webhooks")
    def unregister_webhooks(self, request, queryset):
        self._webhook_action(request, queryset, register=False)

    def _webhook_action(self, request, queryset, *, register):
        from providers_app.adapters.base import ProviderError

        for provider in queryset:
            try:
                if register:
                    result = services.webhook_register(provider=provider)
                    self.message_user(request, f"{provider.name}: webhook {result['webhook_id']} registered.")
                else:
                    services.webhook_unregister(provider=provider)
                    self.message_user(request, f"{provider.name}: webhook removed.")
            except (InvalidInput, ProviderError) as exc:
                self.message_user(request, f"{provider.name}: {exc.message}", level=messages.ERROR)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.provider_update(
                provider=obj,
                data={"name": data["name"], "weight": data["weight"], "config": data["config"]},
                partial=False,
            )
        else:
            saved = services.provider_create(
                name=data["name"], type=data["type"], config=data["config"], weight=data["weight"]
            )
        form.instance = saved
        obj.pk = saved.pk


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator  # bounded COUNT(*) on a big table
    """Read-only: deliveries are written by the intake and the processing job only."""

    list_display = ["received_at", "provider", "event", "status", "attempts", "processed_at"]
    list_filter = ["status", "provider__type", "event"]
    search_fields = ["dedup_key", "event"]
    list_select_related = ["provider"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["process_again"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Process again (failed deliveries)")
    def process_again(self, request, queryset):
        count = 0
        for delivery in queryset.filter(status=WebhookDelivery.Status.FAILED):
            count += bool(services.webhook_enqueue(delivery_id=str(delivery.pk)))
        self.message_user(request, f"{count} delivery job(s) sent.")
