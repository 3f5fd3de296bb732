"""Console: Settings > Notifications (rules, with preview and "send a sample to me"),
Settings > Notification Webhooks, Reports > Sent Notifications."""

from app.admin.notifications.rules import NotificationRuleView
from app.admin.notifications.sent import SentNotificationView
from app.admin.notifications.webhooks import NotificationWebhookView

__all__ = ["NotificationRuleView", "NotificationWebhookView", "SentNotificationView"]
