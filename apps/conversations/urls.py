"""/chat/ routes: the page and the JSON + SSE API of the chat front door."""

from django.urls import path

from apps.conversations import views

app_name = "conversations"
urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("api/conversations", views.conversations_api, name="conversations"),
    path("api/conversations/<str:conversation_id>", views.conversation_api, name="conversation"),
    path("api/conversations/<str:conversation_id>/messages", views.messages_api, name="messages"),
    path("api/replies/<str:reply_id>/events", views.reply_events, name="reply-events"),
]
