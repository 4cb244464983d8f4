"""Score API: the latest churn score of one customer."""

from __future__ import annotations

from typing import ClassVar

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.models import ApiScope, Customer
from scoring.selectors import customer_latest_score


class ScoreOut(serializers.Serializer):
    customer = serializers.CharField(help_text="The customer's external id")
    probability = serializers.FloatField(
        allow_null=True, help_text="Calibrated churn probability (0–1); null if not scorable"
    )
    tier = serializers.CharField(help_text="Risk tier name, or not_scorable")
    scorable = serializers.BooleanField()
    not_scorable_reason = serializers.CharField(help_text="Why there is no probability")
    reasons = serializers.ListField(child=serializers.CharField())
    model_version = serializers.CharField()
    scored_at = serializers.DateTimeField()
    as_of = serializers.DateTimeField(help_text="Features were computed from data before this")
    run = serializers.CharField()


class CustomerScoreApi(APIView):
    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.CUSTOMERS_READ}

    @extend_schema(responses=ScoreOut)
    def get(self, request: Request, external_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        score = customer_latest_score(customer=customer)
        if score is None:
            raise NotFound(f"customer '{external_id}' has not been scored yet")
        return Response(
            ScoreOut(
                {
                    "customer": customer.external_id,
                    "probability": score.probability,
                    "tier": score.tier,
                    "scorable": score.scorable,
                    "not_scorable_reason": score.not_scorable_reason,
                    "reasons": score.reasons,
                    "model_version": score.run.model.version,
                    "scored_at": score.scored_at,
                    "as_of": score.run.as_of,
                    "run": score.run.run_key,
                }
            ).data
        )
