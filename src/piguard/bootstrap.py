"""The composition root: builds every part of piguard from one `Settings`, once.

Nothing else constructs engines, keys or services; tests, the CLI and the web app all call
`build(settings)` and get the same wiring.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine

from piguard.audit.log import AuditLog
from piguard.audit.witness import DirectoryWitness, HttpWitness, Witness
from piguard.auth.service import ApiKeys
from piguard.batching import LoopBatcher
from piguard.committer import AnswerCommitter
from piguard.consent.guardians import GuardianService
from piguard.consent.service import ConsentService
from piguard.db.engine import make_engine
from piguard.db.migrate import upgrade
from piguard.db.uow import Transactions
from piguard.enforcement import Enforcer
from piguard.files import private_dir
from piguard.kernel.clock import Clock, SystemClock
from piguard.policies import bundled_policy_path
from piguard.policy.decide import DecisionEngine
from piguard.policy.language import load_policy
from piguard.policy.model import Policy
from piguard.policy.notice import build_notice, render_markdown
from piguard.settings import Settings
from piguard.sharing.registry import RecipientRegistry
from piguard.vault.crypto import KeyMaterial, load_or_create_key_file
from piguard.vault.keyfile import KeyFileWrapper
from piguard.vault.keys import DataKeys, KeyWrapper
from piguard.vault.keystore import KeyStore, open_keystore
from piguard.vault.service import PendingRead, ReadAsked, VaultService, read_refusal


@dataclass(frozen=True, slots=True)
class Piguard:
    """Everything a process needs, wired."""

    settings: Settings
    policy: Policy
    decisions: DecisionEngine
    db: Engine
    transactions: Transactions
    keystore_db: Engine
    keys: KeyMaterial
    audit: AuditLog
    enforcer: Enforcer
    vault: VaultService
    consents: ConsentService
    guardians: GuardianService
    recipients: RecipientRegistry
    api_keys: ApiKeys
    clock: Clock
    answers: AnswerCommitter
    reads: LoopBatcher[ReadAsked, PendingRead]

    def close(self) -> None:
        self.reads.close()
        self.answers.close()
        self.audit.close()
        self.db.dispose()
        self.keystore_db.dispose()


def load_keys(settings: Settings) -> KeyMaterial:
    if settings.master_key is not None:
        return KeyMaterial.from_master_key(settings.master_key.get_secret_value())
    return load_or_create_key_file(settings.resolved_key_file)


def _local_wrapper(settings: Settings, keys: KeyMaterial) -> KeyWrapper:
    """The master key's KEK, or the key file's, followed as `keys rotate` and `retire` change it."""
    if settings.master_key is not None:
        return keys
    return KeyFileWrapper(settings.resolved_key_file, keys)


def make_witness(settings: Settings) -> Witness | None:
    """The witness the settings name (`PIGUARD_AUDIT_WITNESS`), or None."""
    if settings.witness_url is not None and settings.audit_witness_token is not None:
        return HttpWitness(settings.witness_url, settings.audit_witness_token.get_secret_value())
    if settings.witness_folder is not None:
        return DirectoryWitness(settings.witness_folder)
    return None


def notice_hash(policy: Policy) -> str:
    """SHA-256 of both rendered notices: what a consent says the subject was shown."""
    text = "".join(render_markdown(build_notice(policy, lang)) for lang in ("zh", "en"))
    return hashlib.sha256(text.encode()).hexdigest()


def build(
    settings: Settings,
    clock: Clock | None = None,
    *,
    migrate: bool = True,
    key_wrapper: KeyWrapper | None = None,
) -> Piguard:
    """Wire piguard; with `migrate`, bring both databases to the newest schema first.

    Data keys are wrapped by the local key-encryption key unless a `key_wrapper` (a KMS
    adapter) is given; the blind-index and checkpoint-signing keys stay local either way."""
    clock = clock or SystemClock()
    private_dir(settings.var_dir)
    policy = load_policy(settings.policy_file or bundled_policy_path())
    # Deleted rows are overwritten, not left in free pages: erased blind indexes included (S2).
    db = make_engine(settings.resolved_database_url, secure_delete=True)
    keystore_db = open_keystore(settings.resolved_keystore_url)
    if migrate:
        upgrade(db, "main")
        upgrade(keystore_db, "keystore")
    keys = load_keys(settings)
    transactions = Transactions(db)
    decisions = DecisionEngine(policy)
    audit = AuditLog(
        db,
        keys.signer,
        keys.chain_key,
        settings.checkpoint_file,
        clock,
        checkpoint_seconds=settings.checkpoint_seconds,
        witness=make_witness(settings),
    )
    enforcer = Enforcer(decisions, audit)
    api_keys = ApiKeys(transactions, policy, clock, audit)
    vault = VaultService(
        transactions=transactions,
        policy=policy,
        enforcer=enforcer,
        keys=DataKeys(KeyStore(keystore_db), key_wrapper or _local_wrapper(settings, keys), clock),
        index=keys.blind_index,
        clock=clock,
        credentials=api_keys,
    )
    # An erasure a crash or a key-store failure interrupted is finished before anything is
    # served: its key destroyed, the subject marked erased (`vault.erasure`).
    vault.finish_erasures()
    shown = notice_hash(policy)
    reader = transactions.held()  # the reads' thread holds one connection
    consents = ConsentService(
        transactions=transactions,
        policy=policy,
        enforcer=enforcer,
        vault=vault,
        notice_hash=shown,
        clock=clock,
    )
    guardians = GuardianService(
        transactions=transactions, policy=policy, vault=vault, consents=consents, notice_hash=shown
    )
    return Piguard(
        settings=settings,
        policy=policy,
        decisions=decisions,
        db=db,
        transactions=transactions,
        keystore_db=keystore_db,
        keys=keys,
        audit=audit,
        enforcer=enforcer,
        vault=vault,
        consents=consents,
        guardians=guardians,
        recipients=RecipientRegistry(policy),
        api_keys=api_keys,
        clock=clock,
        answers=AnswerCommitter(
            transactions,
            partial(audit.append, seal=False, checked=True),
            api_keys.live_query,
            vault.versions_query,
        ),
        # Reads off the event loop: a batch per read transaction, on one thread.
        reads=LoopBatcher(
            "piguard-reader",
            partial(vault.read_many_unrecorded, transactions=reader),
            read_refusal,
            max_weight=4096,
            stopped=reader.close,
        ),
    )
