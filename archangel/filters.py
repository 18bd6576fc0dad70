"""Query-string filters shared by the API's FilterSets."""

import datetime as dt

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC. Python accepts offsets up to ±23:59, PostgreSQL
    only up to ±15:59: an offset it refuses reached the query as-is and failed it with a 500."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None or value.tzinfo is None:
            return value
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:  # year 1 with a positive offset, 9999 with a negative one
            raise forms.ValidationError("Out of range once converted to UTC.", code="invalid") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
