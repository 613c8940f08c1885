"""The /v1 operations: one API class per operation, nested input/output serializers, no logic here.

Validation of shapes is the serializers' job; everything else is a call into completions, services or
selectors. Errors leave as OpenAI-style bodies through `PartnerApiView`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.partner_api import selectors, services
from apps.partner_api.authentication import PartnerApiView
from apps.partner_api.completions import completion_run, token_estimate
from apps.partner_api.errors import PartnerApiError
from apps.partner_api.streaming import sse_response


class StopField(serializers.Field):
    """OpenAI's `stop`: a string or a list of up to four strings."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            return data
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(s, str) for s in data):
            return data
        raise serializers.ValidationError("must be a string or a list of at most 4 strings")

    def to_representation(self, value: Any) -> Any:
        return value


class MessageField(serializers.DictField):
    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value.get("role"), str):
            raise serializers.ValidationError("each message needs a string 'role'")
        return value


class ModelListApi(PartnerApiView):
    scope = "models"

    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": selectors.models_list(api_key=self.api_key)})


class ModelDetailApi(PartnerApiView):
    scope = "models"

    def get(self, request: Request, model_id: str) -> Response:
        return Response(selectors.model_get(api_key=self.api_key, model_id=model_id))


class ChatCompletionCreateApi(PartnerApiView):
    scope = "chat"

    class InputSerializer(serializers.Serializer):
        model = serializers.CharField(max_length=64)
        messages = serializers.ListField(child=MessageField(), min_length=1, max_length=500)
        stream = serializers.BooleanField(required=False, allow_null=True, default=False)
        stream_options = serializers.DictField(required=False, allow_null=True)
        temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
        top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
        max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=32768)
        max_completion_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                                         max_value=32768)
        stop = StopField(required=False, allow_null=True)
        seed = serializers.IntegerField(required=False, allow_null=True)
        n = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1)
        user = serializers.CharField(required=False, allow_blank=True, max_length=256)
        response_format = serializers.DictField(required=False, allow_null=True)
        tools = serializers.ListField(required=False, allow_null=True, max_length=0)
        logprobs = serializers.BooleanField(required=False, allow_null=True)
        conversation = serializers.UUIDField(required=False, allow_null=True)

    def rate_cost(self, request: Request) -> tuple[int, int]:
        return 1, token_estimate(request.data)

    def post(self, request: Request) -> Any:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("logprobs"):
            raise PartnerApiError(400, "unsupported", "logprobs are not supported.", param="logprobs")
        outcome = completion_run(
            api_key=self.api_key, data=serializer.validated_data, raw_body=request.body, path=request.path,
            idempotency_key=request.headers.get("Idempotency-Key"), reserved_tokens=self.reserved_tokens)
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        if outcome.chunks is not None:
            return sse_response(request, outcome.chunks, {**self.rate_headers, **headers})
        return Response(outcome.body, headers=headers)


class ConversationOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    model = serializers.CharField()
    domain = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    pack_version = serializers.IntegerField()


class ConversationListApi(PartnerApiView):
    scope = "conversations"

    class FilterSerializer(serializers.Serializer):
        limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
        after = serializers.CharField(required=False, max_length=200)

    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = selectors.conversations_page(api_key=self.api_key, **filters.validated_data)
        data = [selectors.conversation_dict(c) for c in page.items]
        return Response({"object": "list", "data": ConversationOutputSerializer(data, many=True).data,
                         "has_more": page.has_more, "next_cursor": page.next_cursor})


class ConversationCreateApi(PartnerApiView):
    scope = "conversations"

    class InputSerializer(serializers.Serializer):
        model = serializers.CharField(max_length=64)
        title = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
        metadata = serializers.DictField(required=False, default=dict)

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation = services.partner_conversation_create(api_key=self.api_key, **serializer.validated_data)
        data = ConversationOutputSerializer(selectors.conversation_dict(conversation)).data
        return Response(data, status=201)


class ConversationDetailApi(PartnerApiView):
    scope = "conversations"

    def get(self, request: Request, conversation_id: str) -> Response:
        link = selectors.partner_conversation_get(api_key=self.api_key, conversation_id=conversation_id)
        return Response(ConversationOutputSerializer(selectors.conversation_dict(link.conversation)).data)

    def delete(self, request: Request, conversation_id: str) -> Response:
        conversation = services.partner_conversation_delete(api_key=self.api_key, conversation_id=conversation_id)
        return Response({"id": str(conversation.id), "object": "conversation.deleted", "deleted": True})


class MessageListApi(PartnerApiView):
    scope = "conversations"

    def get(self, request: Request, conversation_id: str) -> Response:
        link = selectors.partner_conversation_get(api_key=self.api_key, conversation_id=conversation_id)
        messages = selectors.conversation_messages(conversation=link.conversation)
        return Response({"object": "list", "data": [selectors.message_dict(m) for m in messages]})


class FeedbackCreateApi(PartnerApiView):
    scope = "conversations"

    class InputSerializer(serializers.Serializer):
        message_id = serializers.CharField(max_length=64)
        rating = serializers.ChoiceField(choices=[1, -1])
        comment = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")

    def post(self, request: Request, conversation_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feedback = services.feedback_create(api_key=self.api_key, conversation_id=conversation_id,
                                            **serializer.validated_data)
        return Response({"id": str(feedback.id), "object": "feedback", "message_id": str(feedback.message_id),
                         "rating": feedback.rating, "comment": feedback.comment}, status=201)


class EscalationCreateApi(PartnerApiView):
    scope = "conversations"

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=4000)

    def post(self, request: Request, conversation_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        escalation = services.escalation_create(api_key=self.api_key, conversation_id=conversation_id,
                                                **serializer.validated_data)
        return Response({"id": str(escalation.id), "object": "escalation", "status": escalation.status,
                         "conversation_id": str(escalation.conversation_id), "reason": escalation.reason},
                        status=201)
