from rest_framework import serializers

from providers_app.models import Provider


class ProviderSerializer(serializers.ModelSerializer):
    config = serializers.JSONField(
        help_text="Settings of the provider type. Secret keys (tokens, API keys, webhook and app secrets) are "
        'write-only: they read back as {"set": true|false}; sending that placeholder back keeps the stored value, '
        "null removes it."
    )
    health_status = serializers.ChoiceField(
        choices=Provider.Health.choices,
        required=False,
        help_text="`disabled` (an operator's decision) takes the provider out of routing and delivery; `active` "
        "gives it back, with the health its circuit breaker reports. `degraded` and `down` follow the breaker "
        "and cannot be set (sending the value a provider has changes nothing, so a GET -> PUT round trip works).",
    )

    class Meta:
        model = Provider
        fields = ["id", "name", "type", "config", "health_status", "weight", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Only whether each secret is set, never its value.
        data["config"] = {**instance.config, **{key: {"set": is_set} for key, is_set in instance.secrets_set().items()}}
        return data


class BreakerSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["closed", "open", "half-open"])
    fail_counter = serializers.IntegerField(help_text="Consecutive failures that count against the provider.")
    retry_in_seconds = serializers.FloatField(allow_null=True, help_text="While open: seconds until a probe.")


class BudgetSerializer(serializers.Serializer):
    scope = serializers.CharField(help_text="token, key (Trello) or user (Todoist).")
    credential = serializers.CharField(help_text="A short hash of the credential (never the credential).")
    limit = serializers.IntegerField(help_text="Requests per window as documented (or configured for the plan).")
    usable = serializers.IntegerField(help_text="The limit less the safety margin: what we allow ourselves.")
    window_seconds = serializers.FloatField()
    used = serializers.IntegerField(help_text="Requests in the current (sliding) window.")
    remaining = serializers.IntegerField()
    blocked_for_seconds = serializers.FloatField(help_text="Seconds a 429 from the provider still closes it.")
    recent_rate_per_second = serializers.FloatField(help_text="Requests per second over the last 5 minutes.")
    runs_out_in_seconds = serializers.FloatField(allow_null=True, help_text="At the recent rate; null if never.")
    runs_out_at = serializers.DateTimeField(allow_null=True)


class ProviderHealthSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    health_status = serializers.CharField()
    breaker = BreakerSerializer()
    budgets = BudgetSerializer(many=True)
    last_error = serializers.DictField(allow_null=True, help_text="at, code, status_code, message.")
    check = serializers.DictField(required=False, help_text="With ?check=1: the live health call's result.")
    checked_at = serializers.DateTimeField()
