"""Indexes the supervisor's metrics read on routing's tables.

They live here, not in routing's migrations, because only the supervisor's queries use them:
"today" figures range over accept and end times, and the backlog figures aggregate waiting items
per queue. Partial indexes keep them small: rows without the timestamp, or items no longer
waiting, are not in them. CREATE/DROP INDEX IF NOT EXISTS/IF EXISTS is valid on PostgreSQL and
SQLite alike.
"""

from django.db import migrations

INDEXES = [
    # Answered today, speed to answer, service level: agent work by acceptance time.
    (
        "supervisor_agentwork_opened_at",
        "routing_agentwork (opened_at, queue_id) WHERE opened_at IS NOT NULL",
    ),
    # Handled, declined, timed out today, handle time: agent work by end time.
    (
        "supervisor_agentwork_ended_at",
        "routing_agentwork (ended_at, agent_id) WHERE ended_at IS NOT NULL",
    ),
    # Abandoned today: canceled items by end time.
    (
        "supervisor_workitem_canceled_at",
        "routing_workitem (ended_at, queue_id) WHERE status = 'canceled'",
    ),
    # Waiting count, oldest and average wait per queue, answered from the index alone.
    (
        "supervisor_workitem_waiting_queue",
        "routing_workitem (queue_id, enqueued_at) WHERE status = 'waiting'",
    ),
]


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0001_initial"),
        ("supervisor", "0001_queue_samples"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {name} ON {definition}",
            reverse_sql=f"DROP INDEX IF EXISTS {name}",
        )
        for name, definition in INDEXES
    ]
