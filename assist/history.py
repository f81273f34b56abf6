"""A generated history of closed work, so that training and its figures mean something in a demo
and in tests: cases and web chats in English and Japanese across four topic queues, varied
phrasing, overlapping topics (a refund can be billing or shipping), typos, about 5 % filed in the
wrong queue, close notes with a disposition code (``[refund] ...``).

Deterministic for a seed. Written with bulk inserts, as closed history (nothing is routed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from messaging.models import (
    AccountKind,
    Author,
    Case,
    CaseOrigin,
    CaseStatus,
    ChannelAccount,
    Conversation,
    ConversationStatus,
    Customer,
    CustomerIdentity,
    DeliveryStatus,
    Direction,
    EndedBy,
    IdentityKind,
    Message,
)
from presence.models import Agent, PresenceConfiguration
from presence.services import create_agent
from routing.models import (
    AgentWork,
    AgentWorkState,
    Queue,
    RoutingConfiguration,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)

BILLING, TECHNICAL, ORDERS, ACCOUNT = "Billing", "Technical support", "Orders & shipping", "Account"
QUEUES = (BILLING, TECHNICAL, ORDERS, ACCOUNT)
PRODUCTS = (
    "Aurora Router X2",
    "Pulse Earbuds",
    "Volt Charger 65W",
    "Orbit Smart Plug",
    "Nimbus Cam",  # launched late in the history: only the newest items mention it
)
MISLABEL_SHARE = 0.05
JAPANESE_SHARE = 0.3


@dataclass(frozen=True)
class Topic:
    queue: str
    disposition: str
    priority: int
    en: tuple[str, ...]
    ja: tuple[str, ...]
    note_en: str
    note_ja: str


# {order} {amount} {product} {email} {phone} are filled in per item.
TOPICS = (
    Topic(
        BILLING,
        "refund",
        5,
        (
            "I was charged twice for order {order}, please refund {amount}",
            "Double charge on my card for {order}",
            "Refund not received yet for {order}, it has been two weeks",
            "Can I get my money back? I returned the {product}",
        ),
        (
            "注文{order}で二重に請求されました。{amount}の返金をお願いします",
            "{order}の返金がまだ届いていません",
            "{product}を返品したのに返金されていません",
        ),
        "[refund] Refunded the duplicate charge of {amount} to the original card.",
        "[refund] {amount}を元のカードに返金しました。",
    ),
    Topic(
        BILLING,
        "invoice",
        7,
        (
            "Please send me an invoice with our company VAT number",
            "Where can I download the invoice for {order}?",
            "The receipt shows the wrong address, can you reissue it",
        ),
        (
            "{order}の領収書を発行してください",
            "請求書の宛名を会社名に変更してほしいです",
        ),
        "[invoice] Reissued the invoice and sent it to {email}.",
        "[invoice] 領収書を再発行し{email}に送付しました。",
    ),
    Topic(
        BILLING,
        "payment_failed",
        3,
        (
            "My payment keeps failing at checkout",
            "Card declined but my bank says everything is fine",
            "Subscription renewal payment failed, will I lose access?",
        ),
        (
            "決済がエラーになって支払いできません",
            "カードが使えないと表示されます",
        ),
        "[payment_failed] The bank blocked the charge; customer retried with 3-D Secure.",
        "[payment_failed] カード会社の認証で止まっていました。再決済で完了。",
    ),
    Topic(
        TECHNICAL,
        "firmware",
        4,
        (
            "My {product} keeps disconnecting from wifi every few minutes",
            "{product} wifi drops since the last update",
            "The {product} reboots by itself at night",
            "Connection is very slow after installing the {product}",
        ),
        (
            "{product}のWi-Fiが数分ごとに切れます",
            "アップデート後から{product}が再起動を繰り返します",
            "{product}の接続がとても遅いです",
        ),
        "[firmware] Walked the customer through the firmware update to 2.4.1; stable since.",
        "[firmware] ファームウェアを2.4.1に更新して解決しました。",
    ),
    Topic(
        TECHNICAL,
        "setup",
        6,
        (
            "How do I set up the {product} with the app?",
            "The app can't find my {product} during pairing",
            "Setup of {product} fails at the last step",
        ),
        (
            "{product}の初期設定の方法を教えてください",
            "アプリで{product}が見つかりません",
        ),
        "[setup] Reset the device and paired again with Bluetooth on; works.",
        "[setup] 本体をリセットして再度ペアリングし、設定完了。",
    ),
    Topic(
        TECHNICAL,
        "replacement",
        4,
        (
            "My {product} is dead, it won't turn on anymore",
            "{product} is broken after one week, the light is red",
            "The {product} overheats and smells burnt",
        ),
        (
            "{product}の電源が入らなくなりました",
            "{product}が故障しました。ランプが赤く点滅しています",
        ),
        "[replacement] Hardware fault confirmed; sent a replacement under warranty.",
        "[replacement] 初期不良のため保証で交換品を発送しました。",
    ),
    Topic(
        ORDERS,
        "tracking",
        6,
        (
            "Where is my order {order}? It still says processing",
            "My package hasn't arrived, order {order}",
            "Tracking for {order} has not moved in five days",
            "When will the {product} be delivered?",
        ),
        (
            "注文{order}の荷物がまだ届きません",
            "{order}の配送状況を教えてください",
            "{product}はいつ届きますか",
        ),
        "[tracking] Carrier delay; shared the new tracking link, delivery expected in 2 days.",
        "[tracking] 配送業者の遅延。新しい追跡番号を案内しました。",
    ),
    Topic(
        ORDERS,
        "damaged",
        4,
        (
            "The {product} arrived damaged, the box was crushed. Refund or replacement?",
            "Received the wrong item for order {order}",
            "Parts missing from my order {order}",
        ),
        (
            "{product}が破損した状態で届きました",
            "注文{order}で違う商品が届きました",
        ),
        "[damaged] Sent a prepaid return label and shipped a new unit.",
        "[damaged] 返送用ラベルを送り、新しい商品を発送しました。",
    ),
    Topic(
        ORDERS,
        "change_address",
        5,
        (
            "Can I change the delivery address for {order}?",
            "Please cancel my order {order} before it ships",
            "I want to change my order, add a {product}",
        ),
        (
            "{order}の配送先住所を変更したいです",
            "注文{order}をキャンセルしてください",
        ),
        "[change_address] Updated the address before dispatch.",
        "[change_address] 発送前に配送先を変更しました。",
    ),
    Topic(
        ACCOUNT,
        "password_reset",
        3,
        (
            "I can't log in, the password reset email never arrives",
            "Locked out of my account after too many attempts",
            "Password reset link says expired",
        ),
        (
            "ログインできません。パスワード再設定のメールが届きません",
            "アカウントがロックされました",
        ),
        "[password_reset] Unlocked the account and sent a fresh reset link to {email}.",
        "[password_reset] ロックを解除し、再設定リンクを{email}に送りました。",
    ),
    Topic(
        ACCOUNT,
        "update_details",
        7,
        (
            "Please change the email on my account to {email}",
            "How do I update my phone number to {phone}?",
            "I want to delete my account and my data",
        ),
        (
            "登録メールアドレスを{email}に変更したいです",
            "電話番号を{phone}に変更してください",
        ),
        "[update_details] Verified identity and updated the contact details.",
        "[update_details] 本人確認のうえ登録情報を変更しました。",
    ),
    Topic(
        ACCOUNT,
        "security",
        2,
        (
            "Someone logged into my account, I think I was hacked",
            "I got a login alert from another country",
            "Unknown orders on my account, suspicious activity",
        ),
        (
            "不正ログインされたかもしれません",
            "身に覚えのない注文がアカウントにあります",
        ),
        "[security] Signed out all sessions, reset the password and enabled two-step login.",
        "[security] 全セッションを終了し、パスワード再設定と二段階認証を設定。",
    ),
)

_OPENERS_EN = ("", "Hi, ", "Hello, ", "Hey - ", "Good morning. ", "URGENT: ", "Help! ")
_CLOSERS_EN = ("", "", " Thanks.", " Thank you!", " Please help asap.", " Regards, J.")
_OPENERS_JA = ("", "お世話になっております。", "すみません、", "至急、")
_CLOSERS_JA = ("", "", "よろしくお願いします。", "対応お願いします。")


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 8 or rng.random() > 0.25:
        return text
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(1, len(chars) - 1)
        if chars[i].isascii() and chars[i].isalpha():
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


@dataclass(frozen=True)
class Generated:
    queue: str
    true_queue: str
    subject: str
    body: str
    note: str
    priority: int
    japanese: bool
    chat: bool
    product: str
    created_at: datetime


def generate(count: int, *, seed: int = 7, end: datetime, days: int = 120) -> list[Generated]:
    """``count`` closed items spread over ``days`` up to ``end``, oldest first."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    out = []
    for n in range(count):
        created = start + timedelta(seconds=(days * 86400) * (n + rng.random()) / count)
        late = n >= count * 0.7
        products = PRODUCTS if late else PRODUCTS[:-1]
        product = rng.choice(products)
        if late and rng.random() < 0.3:
            product = PRODUCTS[-1]
        topic = rng.choice(TOPICS)
        japanese = rng.random() < JAPANESE_SHARE
        order = f"ORD-{rng.randint(100000, 999999)}"
        fill = {
            "order": order if rng.random() < 0.8 else order.replace("ORD-", "#"),
            "amount": f"¥{rng.randint(5, 300) * 100:,}" if japanese else f"${rng.randint(5, 300)}",
            "product": product,
            "email": f"user{rng.randint(1, 9999)}@example.com",
            "phone": f"+81 90-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
        }
        if japanese:
            text = rng.choice(topic.ja).format(**fill)
            body = rng.choice(_OPENERS_JA) + text + rng.choice(_CLOSERS_JA)
            note = topic.note_ja.format(**fill)
        else:
            text = _typo(rng.choice(topic.en).format(**fill), rng)
            body = rng.choice(_OPENERS_EN) + text + rng.choice(_CLOSERS_EN)
            note = topic.note_en.format(**fill)
        subject = text if len(text) <= 60 else text[:57] + "..."
        queue = topic.queue
        if rng.random() < MISLABEL_SHARE:
            queue = rng.choice([q for q in QUEUES if q != topic.queue])
        priority = topic.priority if rng.random() > 0.15 else rng.choice((2, 3, 5, 7))
        out.append(
            Generated(
                queue=queue,
                true_queue=topic.queue,
                subject=subject,
                body=body,
                note=note,
                priority=priority,
                japanese=japanese,
                chat=rng.random() < 0.4,
                product=product,
                created_at=created,
            )
        )
    return out


def _agent() -> Agent:
    agent = Agent.objects.order_by("id").first()
    if agent is not None:
        return agent
    config, _ = PresenceConfiguration.objects.get_or_create(
        name="History", defaults={"capacity": 5}
    )
    return create_agent(username="history", password=None, presence_config=config)


def _queues() -> dict[str, Queue]:
    config, _ = RoutingConfiguration.objects.get_or_create(
        name="Cases", defaults={"routing_priority": 3}
    )
    return {
        name: Queue.objects.get_or_create(name=name, defaults={"routing_config": config})[0]
        for name in QUEUES
    }


def _channels() -> tuple[ServiceChannel, ServiceChannel]:
    case, _ = ServiceChannel.objects.get_or_create(
        key="case", defaults={"label": "Case", "default_size_units": 2}
    )
    chat, _ = ServiceChannel.objects.get_or_create(
        key="chat", defaults={"label": "Web chat", "default_size_units": 1}
    )
    return case, chat


@transaction.atomic
def seed_history(count: int, *, seed: int = 7, now: datetime | None = None) -> int:
    """Write ``count`` generated closed items (cases and web chats, with customers, messages and
    closed agent work), ending a day before ``now``. Returns how many were written."""
    now = now or timezone.now()
    rows = generate(count, seed=seed, end=now - timedelta(days=1))
    queues = _queues()
    case_channel, chat_channel = _channels()
    agent = _agent()
    account, _ = ChannelAccount.objects.get_or_create(
        name="History web chat",
        defaults={
            "kind": AccountKind.WEBCHAT,
            "active": False,
            "queue": queues[TECHNICAL],
            "service_channel": chat_channel,
        },
    )
    start = Customer.objects.count()
    customers = Customer.objects.bulk_create(
        [
            Customer(display_name=f"History customer {start + i}", created_at=r.created_at)
            for i, r in enumerate(rows)
        ]
    )
    items = WorkItem.objects.bulk_create(
        [
            WorkItem(
                channel=chat_channel if r.chat else case_channel,
                queue=queues[r.queue],
                status=WorkItemStatus.CLOSED,
                routing_priority=queues[r.queue].routing_config.routing_priority,
                priority=r.priority,
                size_units=1,
                subject=r.subject,
                payload={"product": r.product, "language": "ja" if r.japanese else "en"},
                created_at=r.created_at,
                enqueued_at=r.created_at,
                ended_at=r.created_at + timedelta(minutes=12),
            )
            for r in rows
        ]
    )
    chats = [(r, i, c) for r, i, c in zip(rows, items, customers, strict=True) if r.chat]
    cases = [(r, i, c) for r, i, c in zip(rows, items, customers, strict=True) if not r.chat]
    identities = CustomerIdentity.objects.bulk_create(
        [
            CustomerIdentity(
                customer=c,
                kind=IdentityKind.WEBCHAT,
                value=f"history-{c.pk}",
                created_at=r.created_at,
            )
            for r, _, c in chats
        ]
    )
    conversations = Conversation.objects.bulk_create(
        [
            Conversation(
                customer=c,
                identity=identity,
                account=account,
                status=ConversationStatus.ENDED,
                started_at=r.created_at,
                ended_at=r.created_at + timedelta(minutes=12),
                ended_by=EndedBy.AGENT,
                last_activity_at=r.created_at + timedelta(minutes=12),
                work_item=item,
            )
            for (r, item, c), identity in zip(chats, identities, strict=True)
        ]
    )
    Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                account=account,
                direction=Direction.IN,
                author=Author.CUSTOMER,
                text=r.body,
                status=DeliveryStatus.DELIVERED,
                created_at=r.created_at,
            )
            for (r, _, _), conversation in zip(chats, conversations, strict=True)
        ]
    )
    case_rows = Case.objects.bulk_create(
        [
            Case(
                subject=r.subject[:200],
                description=r.body,
                status=CaseStatus.CLOSED,
                customer=c,
                origin=CaseOrigin.EMAIL,
                work_item=item,
                created_at=r.created_at,
                updated_at=r.created_at + timedelta(minutes=12),
                closed_at=r.created_at + timedelta(minutes=12),
            )
            for r, item, c in cases
        ]
    )
    conversation_type = ContentType.objects.get_for_model(Conversation)
    case_type = ContentType.objects.get_for_model(Case)
    for (_, item, _), conversation in zip(chats, conversations, strict=True):
        item.record_type, item.record_id = conversation_type, str(conversation.pk)
    for (_, item, _), case in zip(cases, case_rows, strict=True):
        item.record_type, item.record_id = case_type, str(case.pk)
    WorkItem.objects.bulk_update(items, ["record_type", "record_id"], batch_size=1000)
    AgentWork.objects.bulk_create(
        [
            AgentWork(
                item=item,
                agent=agent,
                queue=item.queue,
                channel=item.channel,
                state=AgentWorkState.CLOSED,
                units=1,
                pushed_at=r.created_at + timedelta(minutes=1),
                opened_at=r.created_at + timedelta(minutes=2),
                ended_at=r.created_at + timedelta(minutes=12),
                enqueued_at=r.created_at,
                end_note=r.note,
            )
            for r, item in zip(rows, items, strict=True)
        ],
        batch_size=1000,
    )
    return len(rows)
