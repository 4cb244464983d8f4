from typing import Any

from django.core.management.base import BaseCommand

from campaigns.channels.push import vapid_key_pair


class Command(BaseCommand):
    help = (
        "Print a new VAPID key pair for Web Push, as the two settings lines to put in the "
        "environment (docs/channels.md). The public key is also the applicationServerKey the "
        "shop's service worker subscribes with."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        private, public = vapid_key_pair()
        self.stdout.write(f"WEBPUSH_VAPID_PRIVATE_KEY={private}")
        self.stdout.write(f"WEBPUSH_VAPID_PUBLIC_KEY={public}")
        self.stderr.write(
            "Keep the private key secret; changing it invalidates every browser subscription."
        )
