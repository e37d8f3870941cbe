"""`piguard audit ...`: verify the tamper-evident audit log (clause S2)."""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from piguard.audit.log import signature_check, verify_storage
from piguard.audit.witness import HttpWitness
from piguard.bootstrap import make_witness
from piguard.db.engine import make_engine
from piguard.kernel.errors import PiguardError
from piguard.kernel.text import Lang
from piguard.settings import Settings
from piguard.vault.crypto import KeyMaterial, load_or_create_key_file

app = typer.Typer(help="Verify the tamper-evident audit log (S2).", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


@app.callback()
def audit() -> None:
    """Verify the tamper-evident audit log (S2)."""


_TEXT = {
    "zh": {
        "title": "审计日志校验",
        "records": "已校验记录",
        "head": "链头",
        "checkpoints": "已校验检查点（其中来自文件）",
        "witnessed": "见证方持有的检查点",
        "covered": "最新签名检查点",
        "unsealed": "其后未封存的记录",
        "seconds": "耗时（秒）",
        "no_file": "未找到检查点文件 {path}：只能依靠数据库中的检查点发现截断",
        "ok": "审计日志完整：未发现修改、删除、插入、重排或截断",
        "broken": "审计日志已被篡改：发现 {n} 个问题",
        "omitted": "另有 {n} 个问题未列出",
        "kind": "类型",
        "seq": "序号",
        "what": "说明",
        "unreadable": "无法读取审计日志",
    },
    "en": {
        "title": "audit log verification",
        "records": "records checked",
        "head": "head",
        "checkpoints": "checkpoints checked (from the file)",
        "witnessed": "checkpoints held by the witness",
        "covered": "newest signed checkpoint",
        "unsealed": "records after it (unsealed)",
        "seconds": "seconds",
        "no_file": "checkpoint file {path} not found: only database checkpoints show truncation",
        "ok": "the audit log is intact: no edit, deletion, insertion, reordering or truncation",
        "broken": "the audit log was tampered with; problems found: {n}",
        "omitted": "{n} more problems not listed",
        "kind": "kind",
        "seq": "seq",
        "what": "description",
        "unreadable": "cannot read the audit log",
    },
}


@app.command()
def verify(
    database_url: Annotated[
        str | None, typer.Option(help="Database URL (default: PIGUARD_DATABASE_URL or var/).")
    ] = None,
    checkpoint_file: Annotated[
        Path | None, typer.Option(help="Checkpoint file (default: var/audit-checkpoints.jsonl).")
    ] = None,
    public_key: Annotated[
        list[str] | None,
        typer.Option(
            help="Trusted Ed25519 public key, base64; repeatable "
            "(default: the installation's own signing key)."
        ),
    ] = None,
    lang: Annotated[str, typer.Option(help="zh or en")] = "zh",
) -> None:
    """Check every record and signed checkpoint; exit 1 when anything was tampered with."""
    if lang not in ("zh", "en"):
        errors.print(f"--lang must be zh or en, not {lang!r}")
        raise typer.Exit(2)
    words = _TEXT[lang]
    built: list[Settings] = []

    def settings() -> Settings:  # built once; the chain key always comes from it
        if not built:
            built.append(Settings())
        return built[0]

    try:
        url = database_url or settings().resolved_database_url
        file = checkpoint_file or settings().checkpoint_file
        material = _own_keys(settings())
        keys = [_b64(key) for key in public_key] if public_key else [material.signer.public_bytes()]
        check = signature_check(keys)
        witness = make_witness(settings())
        engine = make_engine(url)
        try:
            started = time.perf_counter()
            result = verify_storage(engine, file, check, material.chain_key, witness=witness)
            elapsed = time.perf_counter() - started
        finally:
            engine.dispose()
            if isinstance(witness, HttpWitness):
                witness.close()
    except PiguardError as exc:
        errors.print(f"[red]✗[/red] {escape(exc.message.in_(_lang(lang)))}", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:  # no database, no table, a bad URL: not a verdict, exit 2
        errors.print(f"[red]✗[/red] {words['unreadable']}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    report = result.report
    summary = Table(title=words["title"], show_header=False)
    summary.add_column()
    summary.add_column(overflow="fold")
    summary.add_row(words["records"], f"{report.records_checked:,}")
    summary.add_row(words["head"], f"{report.head_seq} · {report.head_hash or '-'}")
    summary.add_row(words["checkpoints"], f"{result.checkpoints:,} ({result.from_file:,})")
    if witness is not None:
        summary.add_row(words["witnessed"], f"{result.witnessed:,} · {witness.describe()}")
    summary.add_row(words["covered"], str(report.checkpoint_seq))
    summary.add_row(words["unsealed"], f"{report.unsealed:,}")
    summary.add_row(words["seconds"], f"{elapsed:.2f}")
    console.print(summary)
    if not result.file_found:
        console.print(f"[yellow]![/yellow] {words['no_file'].format(path=file)}", highlight=False)
    if report.ok:
        console.print(f"[green]✓[/green] {words['ok']}")
        return
    problems = Table(title=words["broken"].format(n=len(report.problems)))
    problems.add_column(words["kind"], no_wrap=True)
    problems.add_column(words["seq"], justify="right", no_wrap=True)
    problems.add_column(words["what"], overflow="fold")
    for problem in report.problems:
        problems.add_row(problem.kind, str(problem.seq), problem.describe(_lang(lang)))
    console.print(problems)
    if report.problems_omitted:
        console.print(words["omitted"].format(n=report.problems_omitted))
    console.print(f"[red]✗[/red] {words['broken'].format(n=len(report.problems))}")
    raise typer.Exit(1)


def _lang(lang: str) -> Lang:
    return "zh" if lang == "zh" else "en"


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        errors.print(f"--public-key is not base64: {value!r}")
        raise typer.Exit(2) from None


def _own_keys(settings: Settings) -> KeyMaterial:
    """This installation's keys: the chain key links the records, and the public half of the
    signing key is trusted unless `--public-key` names others. Never creates a key file."""
    if settings.master_key is not None:
        return KeyMaterial.from_master_key(settings.master_key.get_secret_value())
    if settings.resolved_key_file.exists():
        return load_or_create_key_file(settings.resolved_key_file)
    errors.print("no key file and no master key: the audit chain cannot be checked without its key")
    raise typer.Exit(2)
