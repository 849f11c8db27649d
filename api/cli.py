"""The `accord` command line: one clear line on stderr and a non-zero exit for every error."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from uuid import UUID

import orjson
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TaskID

from api import tokens
from api.client import AccordError, AsyncClient
from api.demo import describe, seed
from api.home import Home, HomeError, default_home, passphrase
from api.server import Running, running, serve
from api.subscriber import Untrusted
from api.tokens import Scope
from api.verify import NotVerifiable, ledger_key_from, verify_file, verify_ledger, verify_url
from domain.named import named
from domain.record import DecisionRecord
from ledger import access, bundle, keys
from ledger import checkpoint as checkpoints
from ledger.directory_records import Organisation
from ledger.errors import LedgerError, Malformed
from ledger.files import FileRefused, SymlinkRefused, write_private
from ledger.log import Log
from ledger.sealer import Sealer
from projections.database import Database
from projections.follower import Follower
from projections.views import PROJECTIONS, by_name

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `accord` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except LedgerError as exc:
        print(f"accord: {exc.code}: {exc.detail}", file=sys.stderr)
    except OSError as exc:
        print(f"accord: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accord", description=__doc__)
    parser.add_argument(
        "--home", type=Path, default=None, help="ledger home (default: $ACCORD_HOME or ./.accord)"
    )
    parser.add_argument(
        "--store",
        default=None,
        help="store URL, sqlite:///PATH or postgresql://... (default: $ACCORD_STORE or the home's)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create the home: keys, store and directory")
    init.add_argument(
        "--origin", required=True, help="the ledger's origin, e.g. clinic.example/accord"
    )
    init.set_defaults(run=_init)

    status = commands.add_parser("status", help="show the ledger's origin, keys and size")
    status.set_defaults(run=_status)

    demo = commands.add_parser(
        "demo", help="play the worked case through the API and print its plan (rerunnable)"
    )
    demo.set_defaults(run=_demo)

    serve_ = commands.add_parser("serve", help="serve the HTTP API and keep the projections")
    serve_.add_argument("--host", default="127.0.0.1")
    serve_.add_argument("--port", type=int, default=8080)
    serve_.add_argument(
        "--demo",
        action="store_true",
        help="seed the worked case (once) and print its id and a reviewer token",
    )
    serve_.set_defaults(run=_serve)

    token = commands.add_parser("token", help="bearer tokens for reading").add_subparsers(
        required=True, metavar="ACTION"
    )
    issue = token.add_parser("issue", help="issue a token; it is printed once and never stored")
    issue.add_argument("--person", required=True)
    issue.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    issue.add_argument(
        "--organisation", help="limit a service token to one registered organisation (its id)"
    )
    issue.set_defaults(run=_token_issue)
    revoke_token = token.add_parser("revoke", help="revoke a token by its id")
    revoke_token.add_argument("--token", required=True, help="the token id (see `token list`)")
    revoke_token.set_defaults(run=_token_revoke)
    list_tokens = token.add_parser("list", help="every token issued: id, person, scope, state")
    list_tokens.set_defaults(run=_token_list)

    rebuild = commands.add_parser("rebuild", help="drop and rebuild one or all projections")
    rebuild.add_argument("name", nargs="?", choices=[p.name for p in PROJECTIONS])
    rebuild.set_defaults(run=_rebuild)

    verify = commands.add_parser(
        "verify",
        help="verify the ledger (default: the home's store; or through a server's API) or an"
        " evidence bundle; exit 1 at the first bad entry",
    )
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--bundle", type=Path, help="an evidence bundle to check offline")
    source.add_argument(
        "--url", help="verify the whole ledger through the API of the server at this URL"
    )
    verify.add_argument(
        "--ledger-key",
        help="the ledger's public key (base64url, or a .pub file); default: the home's",
    )
    verify.add_argument(
        "--trusted", type=Path, help="a checkpoint saved earlier: also prove the log extends it"
    )
    verify.add_argument(
        "--token", help="with --url: a service token without organisation ($ACCORD_TOKEN)"
    )
    verify.add_argument("--workers", type=int, help="processes to use (default: every core)")
    verify.set_defaults(run=_verify)

    subscribe = commands.add_parser(
        "subscribe", help="follow the event stream, verifying each event; one JSON line each"
    )
    subscribe.add_argument("--url", required=True, help="the Accord server, http://host:port")
    subscribe.add_argument(
        "--token", default=os.environ.get("ACCORD_TOKEN"), help="a service token ($ACCORD_TOKEN)"
    )
    subscribe.add_argument("--after", type=int, default=-1, help="start after this position")
    subscribe.add_argument(
        "--position-file", type=Path, help="keep the position here, and resume from it"
    )
    subscribe.set_defaults(run=_subscribe)

    export = commands.add_parser("export", help="write a case's evidence bundle")
    export.add_argument("case")
    export.add_argument(
        "--bundle", type=Path, required=True, help="where to write it (a new file, mode 0600)"
    )
    export.add_argument(
        "--force", action="store_true", help="replace the file if it exists (never a symlink)"
    )
    export.set_defaults(run=_export)

    person = commands.add_parser("person", help="people in the directory").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = person.add_parser("add", help="register a person; prints the person id")
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, choices=["child", "adult", "professional", "service"])
    add.add_argument("--profession")
    add.add_argument("--organisation")
    add.add_argument("--born", help="YYYY-MM-DD")
    add.set_defaults(run=_person_add)
    _appointments(commands)

    key = commands.add_parser("key", help="Ed25519 keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    new = key.add_parser("new", help="generate a key pair; prints the kid")
    new.add_argument(
        "--out", required=True, type=Path, help="private key file (0600); FILE.pub gets the public"
    )
    new.set_defaults(run=_key_new)
    bind = key.add_parser("bind", help="bind a public key to a person")
    bind.add_argument("--person", required=True)
    bind.add_argument("--public-key", required=True, type=Path, help="a .pub or PEM public key")
    bind.set_defaults(run=_key_bind)
    revoke = key.add_parser("revoke", help="revoke a key")
    revoke.add_argument("--kid", required=True)
    revoke.add_argument("--reason", required=True)
    revoke.add_argument(
        "--compromised-since", help="also invalidate what it signed from this time on (RFC 3339 Z)"
    )
    revoke.set_defaults(run=_key_revoke)
    return parser


def _home(args: argparse.Namespace) -> Home:
    return Home.load(args.home or default_home())


def _store(args: argparse.Namespace) -> str | None:
    return args.store or os.environ.get("ACCORD_STORE")


def _open(args: argparse.Namespace, home: Home) -> DecisionRecord:
    return home.open_ledger(_store(args))


def _init(args: argparse.Namespace) -> int:
    path = args.home or default_home()
    home = Home.create(path, args.origin, args.store or os.environ.get("ACCORD_STORE"))
    print(f"initialised {home.config.origin} in {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        directory = ledger.directory()
        print(f"origin         {ledger.origin}")
        print(f"store          {ledger.store.redacted}")
        print(f"authority key  {home.config.authority_key}")
        print(f"ledger key     {home.config.ledger_key}")
        print(f"directory      {ledger.directory_id}")
        print(f"people         {len(directory.persons)}")
        log = Log(ledger)
        try:
            checkpoint = log.checkpoint()
            print(f"entries        {ledger.size()}")
            print(f"sealed         {log.size()}")
            print(f"checkpoint     {checkpoint.size if checkpoint else 'none yet'}")
        finally:
            log.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    home = _home(args)

    async def main() -> None:
        async with running(home, _store(args), port=0) as server:
            record = server.service.record
            played, created, _ = await asyncio.to_thread(seed, home, record, server.url)
            print(describe(record.case(played.case), record))
            print(f"{created} new entries ({len(played.receipts) - created} already recorded)")

    asyncio.run(main())
    return 0


def _serve(args: argparse.Namespace) -> int:
    home = _home(args)

    def ready(server: Running) -> None:
        print(f"serving {home.config.origin} at {server.url}", flush=True)
        if args.demo:
            record = server.service.record
            played, created, reviewer = seed(home, record, server.url)
            token = tokens.issue(record, reviewer, Scope.REVIEWER)
            print(f"worked case     {played.case} ({created} new entries)")
            print(f"reviewer token  {token}")
            plan = f"{server.url}/v1/cases/{played.case}/plan"
            print(f"try: curl -H 'Authorization: Bearer {token}' {plan}", flush=True)

    serve(home, _store(args), args.host, args.port, ready)
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        try:
            key = _ledger_key(args)
        except HomeError:
            raise NotVerifiable(
                "ledger_key_required",
                "checking a bundle trusts only the ledger's public key, and there is no ledger"
                " home here to take it from: give --ledger-key KEY (base64url, or a .pub file)",
            ) from None
        bundle = verify_file(args.bundle.read_bytes(), key)
        print(
            f"bundle verified: {bundle.entries} entries of {bundle.stream} and"
            f" {bundle.directory_entries} directory entries, all included in the checkpoint"
            f" of size {bundle.checkpoint.size} signed by the ledger key"
            + (f"; {bundle.pending} later entries are not in the bundle" if bundle.pending else "")
        )
        return 0
    if args.url is not None:
        return _verify_url(args)
    home = _home(args)
    key = _ledger_key(args, home)
    trusted = None
    if args.trusted is not None:
        trusted = checkpoints.parse(args.trusted.read_text(), home.config.origin, key)
    with _open(args, home) as record, _progress() as progress:
        report = verify_ledger(record, key, trusted, args.workers, _phases(progress))
    store = report.store
    print(
        f"verified {store.entries} entries in {store.streams} streams ({report.cases} cases):"
        f" every signature, chain and position; the tree matches all {store.checkpoints} signed"
        f" checkpoints (latest: size {store.checkpoint.size}); the rules hold"
        + (f"; {store.unsealed} entries are not sealed yet" if store.unsealed else "")
        + (f"; it extends the trusted checkpoint of size {trusted.size}" if trusted else "")
    )
    return 0


def _verify_url(args: argparse.Namespace) -> int:
    origin = None
    if args.ledger_key:
        key = ledger_key_from(args.ledger_key)
    else:
        try:
            home = _home(args)
        except HomeError:
            raise NotVerifiable(
                "ledger_key_required",
                "verifying through the API trusts only the ledger's public key: give"
                " --ledger-key KEY (base64url, or a .pub file)",
            ) from None
        key, origin = keys.public_key_from_b64(home.config.ledger_key), home.config.origin
    token = args.token or os.environ.get("ACCORD_TOKEN")
    if not token:
        raise NotVerifiable(
            "unauthorized",
            "reading every entry through the API needs a service token without organisation:"
            " give --token or set ACCORD_TOKEN",
        )
    trusted = args.trusted.read_text() if args.trusted is not None else None
    with _progress() as progress:
        report = verify_url(args.url, token, key, trusted, args.workers, _phases(progress), origin)
    log = report.store
    print(
        f"verified {log.entries} entries in {log.streams} streams ({report.cases} cases)"
        f" through {args.url}: every signature, chain and position; the tree matches the"
        f" server's signed checkpoint (latest: size {log.checkpoint.size}); the rules hold"
        + (f"; {log.unsealed} entries are not sealed yet" if log.unsealed else "")
        + (
            f"; it extends the trusted checkpoint of size {report.trusted.size}"
            if report.trusted
            else ""
        )
    )
    return 0


_PHASES = {
    "download": "entries: read through the API",
    "entries": "entries: signatures, chains, tree",
    "rules": "rules",
}


def _phases(progress: Progress) -> Callable[[str, int, int], None]:
    """A progress callback that shows each phase of a verification as its own bar."""
    tasks: dict[str, TaskID] = {}

    def advance(phase: str, count: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(_PHASES.get(phase, phase), total=total)
        progress.update(tasks[phase], total=total, advance=count)

    return advance


def _subscribe(args: argparse.Namespace) -> int:
    async def main() -> None:
        async with AsyncClient(args.url, args.token) as client:
            async for received in client.subscribe(args.after, args.position_file):
                sys.stdout.write(orjson.dumps(received.cloudevent).decode() + "\n")
                sys.stdout.flush()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except AccordError as exc:
        print(f"accord: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    except Untrusted as exc:
        print(f"accord: untrusted: {exc}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    case = _uuid(args.case, "case id")
    home = _home(args)
    with _open(args, home) as record:
        sealer = Sealer(record, home.ledger_key())
        if sealer.leadership.try_acquire():  # no server is sealing: bring the log up to date
            sealer.catch_up()
            sealer.leadership.release()
        try:
            data = bundle.export(record, sealer.log, case, sealer.key.public_key(), named)
        finally:
            sealer.log.close()
    try:
        write_private(args.bundle, data, replace=args.force)
    except FileRefused as exc:
        if isinstance(exc, SymlinkRefused):
            raise
        raise FileRefused(f"{exc.detail}; pass --force to replace it") from None
    print(f"wrote {args.bundle}")
    return 0


def _uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise Malformed(f"{what} {text!r} is not a UUID") from None


def _ledger_key(args: argparse.Namespace, home: Home | None = None) -> keys.Ed25519PublicKey:
    if args.ledger_key:
        return ledger_key_from(args.ledger_key)
    home = home or _home(args)
    return keys.public_key_from_b64(home.config.ledger_key)


def _progress() -> Progress:
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    return Progress(*columns, console=Console(stderr=True))


def _token_issue(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        print(tokens.issue(ledger, args.person, Scope(args.scope), args.organisation))
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        tokens.revoke(ledger, args.token)
    print(f"revoked {args.token}")
    return 0


def _token_list(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        directory = ledger.directory()
        names = {p.id: p.name for p in directory.persons.values()}
        for issued, revoked in access.tokens(ledger):
            state = f"revoked {revoked.revoked_at}" if revoked else "active"
            if not revoked and not tokens.in_office(directory, issued.person, Scope(issued.scope)):
                state = "appointment ended"
            org = ""
            if issued.organisation:
                name = directory.organisation_name(issued.organisation)
                org = f" ({issued.organisation}{f', {name}' if name else ''})"
            who = names.get(issued.person, issued.person)
            when = f"issued {issued.issued_at}"
            print(f"{issued.originator_id.hex}  {issued.scope}{org}  {who}  {when}  {state}")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        database = Database(ledger.store)
        chosen = [by_name(args.name)] if args.name else None
        follower = Follower(ledger, database, chosen)
        # A rebuild folds the recorded reads (for the access projection) as well as the entries.
        reads = sum(1 for _ in ledger.read_records([access.READ_TOPIC]))
        entries = ledger.size()
        total = entries + reads
        with _progress() as progress:
            task = progress.add_task("rebuilding", total=total)
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                # Entries appended while it runs are folded too: the total grows with them.
                progress.update(task, completed=done, total=max(total, done))

            applied = follower.rebuild(advance)
        database.close()
    names = ", ".join(p.name for p in follower.projections)
    entries += max(0, applied - total)  # appended while it ran
    also = f" and {reads} recorded reads" if reads else ""
    print(f"rebuilt {names} from {entries} entries{also}")
    return 0


def _person_add(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        person = home.authority(ledger).register(
            args.name,
            args.kind,
            profession=args.profession,
            organisation=args.organisation,
            born=args.born,
        )
    print(person)
    return 0


def _key_new(args: argparse.Namespace) -> int:
    key = keys.generate()
    keys.save_private_key(key, args.out, passphrase())
    print(keys.kid(key))
    return 0


def _key_bind(args: argparse.Namespace) -> int:
    home = _home(args)
    public = keys.load_public_key(args.public_key)
    with _open(args, home) as ledger:
        print(home.authority(ledger).bind(args.person, public))
    return 0


def _key_revoke(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        home.authority(ledger).revoke(args.kid, args.reason, args.compromised_since)
    print(f"revoked {args.kid}")
    return 0


def _appointments(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`organisation add|list`, `reviewer appoint|remove`, `administrator appoint|remove`."""
    organisation = commands.add_parser(
        "organisation", help="organisations cases share with, named by id"
    ).add_subparsers(required=True, metavar="ACTION")
    add = organisation.add_parser("add", help="register an organisation; prints its id")
    add.add_argument("--name", required=True)
    add.set_defaults(run=_organisation_add)
    organisation.add_parser("list", help="every registered organisation: id and name").set_defaults(
        run=_organisation_list
    )
    for role in ("reviewer", "administrator"):
        actions = commands.add_parser(
            role, help=f"appoint or remove a{'n' if role[0] == 'a' else ''} {role}"
        ).add_subparsers(required=True, metavar="ACTION")
        appoint = actions.add_parser("appoint", help=f"appoint a person as {role}")
        appoint.add_argument("--person", required=True)
        appoint.set_defaults(run=_appoint, role=role)
        remove = actions.add_parser(
            "remove", help=f"end a {role}'s appointment; their {role} tokens stop working"
        )
        remove.add_argument("--person", required=True)
        remove.add_argument("--reason", default="appointment ended")
        remove.set_defaults(run=_remove, role=role)


def _organisation_add(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        same = _same_name(ledger.directory().organisations.values(), args.name)
        organisation = home.authority(ledger).register_organisation(args.name)
    for other in same:
        print(
            f"accord: warning: {other.id} is already registered as {other.name!r};"
            " cases name organisations by id, so check which one you mean",
            file=sys.stderr,
        )
    print(organisation)
    return 0


def _same_name(organisations: Iterable[Organisation], name: str) -> list[Organisation]:
    """Registered organisations whose name reads the same as `name` (NFKC, case and spaces)."""

    def folded(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).casefold().split())

    return [o for o in organisations if folded(o.name) == folded(name)]


def _organisation_list(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        for organisation in ledger.directory().organisations.values():
            print(f"{organisation.id}  {organisation.name}")
    return 0


def _appoint(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        home.authority(ledger).appoint(args.role, args.person)
    print(f"appointed {args.person} as {args.role}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    home = _home(args)
    with _open(args, home) as ledger:
        home.authority(ledger).remove(args.role, args.person, args.reason)
    scope = "reviewer" if args.role == "reviewer" else "admin"
    print(f"removed {args.person} as {args.role}; their {scope} tokens no longer work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
