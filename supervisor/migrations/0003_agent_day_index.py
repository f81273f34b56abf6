"""Per-agent "today" figures for a supervisor's agents: agent work by agent, then end time.

Without it PostgreSQL reads each watched agent's whole history through the agent_id index and
filters by day, so the snapshot grew with every day of history (seen in
bench/supervisor_snapshot.py --older-days). With it, each agent costs only today's rows.
"""

from django.db import migrations

NAME = "supervisor_agentwork_agent_ended"


class Migration(migrations.Migration):
    dependencies = [("supervisor", "0002_metric_indexes")]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {NAME} ON routing_agentwork (agent_id, ended_at) "
            "WHERE ended_at IS NOT NULL",
            reverse_sql=f"DROP INDEX IF EXISTS {NAME}",
        )
    ]
