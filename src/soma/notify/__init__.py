"""Per-tenant notifications: rules route review, project and budget events to webhooks
(HMAC-signed), Slack incoming webhooks and email. See ``docs/notifications.md``.

The :class:`Notifier` tails the store's event log into an outbox and retries deliveries with
exponential backoff; host processes run :meth:`Notifier.run` next to their other loops.
"""

from soma.notify.channels import (
    Channel,
    DeliveryError,
    EmailChannel,
    Message,
    SlackChannel,
    WebhookChannel,
)
from soma.notify.dispatcher import Notifier, PassStats, build_notifier
from soma.notify.events import Notification, notification_for, render_text
from soma.notify.signing import SignatureError, sign, verify
from soma.store.notifications import (
    NOTIFICATION_TYPES,
    NotificationDeliveryRecord,
    NotificationRuleRecord,
    NotificationType,
)

__all__ = [
    "NOTIFICATION_TYPES",
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "Message",
    "Notification",
    "NotificationDeliveryRecord",
    "NotificationRuleRecord",
    "NotificationType",
    "Notifier",
    "PassStats",
    "SignatureError",
    "SlackChannel",
    "WebhookChannel",
    "build_notifier",
    "notification_for",
    "render_text",
    "sign",
    "verify",
]
