"""/chat/ routes: the page and the JSON + SSE API of the chat front door (docs/CONTRACTS.md)."""

from django.urls import path

from apps.conversations import views, views_actions

app_name = "conversations"
urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("api/conversations", views.conversations_api, name="conversations"),
    path("api/conversations/<str:conversation_id>", views.conversation_api, name="conversation"),
    path("api/conversations/<str:conversation_id>/messages", views.messages_api, name="messages"),
    path("api/conversations/<str:conversation_id>/regenerate", views_actions.regenerate_api, name="regenerate"),
    path("api/conversations/<str:conversation_id>/export", views_actions.export_api, name="export"),
    path("api/conversations/<str:conversation_id>/handoff", views_actions.handoff_api, name="handoff"),
    path("api/conversations/<str:conversation_id>/events", views_actions.conversation_events,
         name="conversation-events"),
    path("api/replies/<str:reply_id>/events", views.reply_events, name="reply-events"),
    path("api/replies/<str:reply_id>/cancel", views_actions.reply_cancel_api, name="reply-cancel"),
    path("api/messages/<str:message_id>/feedback", views_actions.feedback_api, name="feedback"),
]
