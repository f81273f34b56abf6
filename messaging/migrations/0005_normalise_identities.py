"""Existing phone numbers, WhatsApp ids and e-mail addresses get their one spelling and match key.

Duplicates are not merged here. Two identities that now spell the same address on the same
channel keep their own rows: the later one keeps its old spelling (the unique (kind, value)
stands) but gets the match key. Customers sharing a match key are what the console lists as
suggested matches (``messaging.linking.suggested_matches``), and a supervisor merges them with
one click, logged and reversible. A migration cannot tell one person written twice from two
people sharing a number or an office address, has no actor to record, and a merge moves
conversations and cases between records: that is a person's decision, not a deploy's.
"""

from __future__ import annotations

from django.db import migrations

BATCH = 2000


def normalise(apps, schema_editor):
    from messaging.identity import normalize

    identity_model = apps.get_model("messaging", "CustomerIdentity")
    taken = set(identity_model.objects.values_list("kind", "value"))
    batch = []
    rows = identity_model.objects.filter(kind__in=["phone", "whatsapp", "email"]).order_by("pk")
    for identity in rows.iterator(chunk_size=BATCH):
        address = normalize(identity.kind, identity.value)
        identity.match_key = address.match_key
        if address.value != identity.value and (identity.kind, address.value) not in taken:
            taken.discard((identity.kind, identity.value))
            taken.add((identity.kind, address.value))
            identity.value = address.value
        batch.append(identity)
        if len(batch) >= BATCH:
            identity_model.objects.bulk_update(batch, ["value", "match_key"])
            batch = []
    if batch:
        identity_model.objects.bulk_update(batch, ["value", "match_key"])


def forget(apps, schema_editor):
    # The new spellings stay (they are valid addresses); only the match keys go.
    apps.get_model("messaging", "CustomerIdentity").objects.update(match_key=None)


class Migration(migrations.Migration):
    dependencies = [("messaging", "0004_identity_match_key_and_claims")]

    operations = [migrations.RunPython(normalise, forget)]
