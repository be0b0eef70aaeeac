"""Entity keys pseudonymised at ingest per decision point, found again by the raw key, with the
chain still verifying; on both backends."""

from __future__ import annotations

import pytest
from lineage_support import MakeRecord

from governance.ingest import Ingestor
from governance.pseudonyms import EntityPseudonyms
from governance.queries import LineageQueries
from governance.store import create_store
from governance.store.entries import DecisionFilter
from security.pseudonyms import PSEUDONYM_PREFIX, KeyedHash

KEY = KeyedHash(b"a-test-key-of-32-bytes-for-hmacs")
CUSTOMER = "4111111111111111"
DAY_US = 86_400_000_000


def test_pseudonyms_are_keyed_stable_and_never_the_plain_sha256() -> None:
    import hashlib

    other = KeyedHash(b"another-key-of-at-least-16-bytes")
    assert KEY.pseudonym(CUSTOMER) == KEY.pseudonym(CUSTOMER)
    assert KEY.pseudonym(CUSTOMER) != other.pseudonym(CUSTOMER)
    assert KEY.pseudonym(CUSTOMER).startswith(PSEUDONYM_PREFIX)
    assert hashlib.sha256(CUSTOMER.encode()).hexdigest() not in KEY.pseudonym(CUSTOMER)
    assert KEY.pseudonym("") == ""
    assert "a-test-key" not in repr(KEY)


def test_a_short_key_a_missing_key_or_a_random_key_is_refused_for_the_store() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        KeyedHash(b"short")
    with pytest.raises(ValueError, match="--entity-key-file"):
        EntityPseudonyms(None, ["card-fraud"])
    with pytest.raises(ValueError, match="kept in a file"):
        EntityPseudonyms(KeyedHash.random(), ["*"])
    assert not EntityPseudonyms(KEY, [""]).enabled


def test_lookup_keys_cover_every_form_a_customer_may_be_stored_under() -> None:
    some = EntityPseudonyms(KEY, ["card-fraud"])
    pseudonym = KEY.pseudonym(CUSTOMER)
    assert some.lookup_keys(CUSTOMER) == (CUSTOMER, pseudonym)
    assert some.lookup_keys(CUSTOMER, "card-fraud") == (pseudonym,)
    assert some.lookup_keys(CUSTOMER, "churn") == (CUSTOMER,)
    assert EntityPseudonyms(KEY, ["*"]).lookup_keys(CUSTOMER) == (pseudonym,)
    assert EntityPseudonyms().lookup_keys(CUSTOMER) == (CUSTOMER,)


async def test_ingest_stores_the_pseudonym_and_queries_find_the_customer_by_key(
    db_url: str, make_record: MakeRecord
) -> None:
    pseudonyms = EntityPseudonyms(KEY, ["card-fraud"])
    store = create_store(db_url)
    await store.open()
    try:
        base = make_record().decided_at_us
        # Five decisions about one customer, alternating between a pseudonymised point and
        # one kept as sent, so that a page of two must interleave both forms.
        records = [
            make_record(
                entity_key=CUSTOMER,
                decision_point="card-fraud" if n % 2 == 0 else "churn",
                received_at_us=base + n * 1000 - 10,
                decided_at_us=base + n * 1000,
            )
            for n in range(5)
        ]
        ingestor = Ingestor(store, pseudonyms)
        outcome = await ingestor.ingest(records)
        assert outcome.stored == 5 and not outcome.rejections
        # A resend is pseudonymised the same way: a duplicate, not a conflict.
        again = await ingestor.ingest(records[:2])
        assert again.duplicates == 2 and not again.rejections

        for n, record in enumerate(records):
            stored = await store.get(record.decision_id)
            assert stored is not None
            expected = KEY.pseudonym(CUSTOMER) if n % 2 == 0 else CUSTOMER
            assert stored.record.entity_key == expected
            assert stored.record == pseudonyms.stored_form(record)

        queries = LineageQueries(store, pseudonyms)
        window = DecisionFilter(base - DAY_US, base + DAY_US, entity_key=CUSTOMER)
        seen: list[str] = []
        token = ""
        while True:
            page = await queries.list_decisions(window, limit=2, page_token=token)
            seen += [d.decision_id for d in page.decisions]
            assert sum(c.count for c in page.counts) == 5
            token = page.next_page_token
            if not token:
                break
        assert seen == [r.decision_id for r in records]
        fraud_only = DecisionFilter(
            base - DAY_US, base + DAY_US, entity_key=CUSTOMER, decision_point="card-fraud"
        )
        page = await queries.list_decisions(fraud_only)
        assert [d.decision_id for d in page.decisions] == [r.decision_id for r in records[::2]]
        # Without the key's holder's help, the raw key finds only what was kept as sent.
        plain = await LineageQueries(store).list_decisions(window)
        assert [d.decision_id for d in plain.decisions] == [r.decision_id for r in records[1::2]]

        report = await store.verify([])
        assert report.problem == "" and report.checked >= 5
    finally:
        await store.close()
