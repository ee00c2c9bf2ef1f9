"""The faculty pages: server-rendered shells (Jinja2) that the plain ES modules in `static/` bring to life.

Pages share the API's sign-in (the session cookie), its authorization and its services. A page never
answers with JSON: the app's error handlers call `error_page`, which sends a visitor who is not signed in
to `/signin` and renders every other error (403, 404, ...) as a page that names no one else's data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from livebatch.auth import FacultyUser
from livebatch.batches import reads, service
from livebatch.batches.questions import answer_key_skew
from livebatch.batches.schemas import MAX_ITEM_INDEX
from livebatch.courses import repository as courses
from livebatch.deps import ReadSessionDep, SettingsDep
from livebatch.terminal import cli_command

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
# The command the pages tell a visitor to run (`.venv/bin/livebatch` in the project's directory, as `make
# demo` prints it), so that it works when pasted.
TEMPLATES.env.globals["cli"] = cli_command()
HISTORY_PAGE = 25
ITEMS_PAGE = 50

# Everything the pages show from the server or the LLM is text: no inline script or style is needed,
# so a stray `<script>` in a generated item could not run even if it were ever inserted as markup.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


router = APIRouter(include_in_schema=False)


class Static(StaticFiles):
    """The stylesheet and modules, revalidated on every load (a cheap 304) so a new release shows at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files() -> Static:
    return Static(directory=HERE / "static")


def is_page(request: Request) -> bool:
    """Whether an error on this request should be a page rather than JSON."""
    path = request.url.path
    return path == "/faculty" or path.startswith("/faculty/")


def error_page(request: Request, status_code: int, message: str) -> Response:
    if status_code == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target, safe='/')}", status_code=303)
    titles = {403: "Not available to you", 404: "Not found", 422: "That address is not valid"}
    # The nav bar too: a 403 or 404 is a dead end otherwise (who is signed in is not known here).
    context = {"title": titles.get(status_code, "Something went wrong"), "message": message, "status": status_code}
    return render(request, "error.html", {**context, "nav_always": True}, status_code=status_code)


def render(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def safe_next(path: str) -> str:
    # Only a path on this site, like the sign-in links themselves (users/service.py). A backslash or a control
    # character is refused too: browsers read "/\\evil.example" as "//evil.example", another site, and the
    # page shows the path in a command to copy into a shell, where a control character has no business.
    on_site = path.startswith("/") and not path.startswith("//")
    return path if on_site and path.isprintable() and "\\" not in path else "/faculty/generate/batches"


def single_quoted(text: str) -> str:
    """`text` to go between single quotes as one POSIX shell word (a `'` inside closed, escaped, reopened): the
    path comes from the query string, and the page's command built from it is pasted into a terminal."""
    return text.replace("'", "'\\''")


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/faculty/generate/batches", status_code=303)


@router.get("/signin")
async def sign_in_help(
    request: Request, settings: SettingsDep, next_path: Annotated[str, Query(alias="next", max_length=500)] = ""
) -> Response:
    """Where a visitor without a session lands: "Sign in with <provider>" when an identity provider is set up,
    else how to get a one-time link from the CLI."""
    target = safe_next(next_path)
    context = {
        "next": target,
        "next_quoted": single_quoted(target),
        "oidc": settings.oidc_enabled,
        "provider_name": settings.oidc_provider_name,
    }
    return render(request, "signin.html", context)


@router.get("/faculty/generate/batches")
async def history_page(
    request: Request,
    session: ReadSessionDep,
    user: FacultyUser,
    before: Annotated[UUID | None, Query(description="Show batches older than this one")] = None,
) -> Response:
    rows, last = await reads.batches_before(session, user, before, limit=HISTORY_PAGE)
    older = str(last.id) if last is not None else None
    context = {"user": user, "nav": "history", "batches": rows, "older": older, "paged": before is not None}
    return render(request, "batches.html", context)


@router.get("/faculty/generate/batch/new")
async def new_batch_page(
    request: Request, session: ReadSessionDep, user: FacultyUser, settings: SettingsDep
) -> Response:
    context = {
        "user": user,
        "nav": "new",
        "courses": await courses.list_courses(session),
        "max_count": settings.max_target_count,
    }
    return render(request, "new.html", context)


@router.get("/faculty/generate/batch/{batch_id}")
async def progress_page(
    request: Request, batch_id: str, session: ReadSessionDep, user: FacultyUser, settings: SettingsDep
) -> Response:
    batch = await reads.get_owned_batch(session, service.parse_batch_id(batch_id), user)
    read = await reads.batch_read(session, batch)
    # The page takes a stream that sent nothing for two heartbeat intervals as lost (a hung server).
    heartbeat_ms = round(settings.heartbeat_s * 1000)
    context = {"user": user, "batch_id": read.id, "course_title": read.course.title, "heartbeat_ms": heartbeat_ms}
    return render(request, "progress.html", context)


@router.get("/faculty/generate/batch/{batch_id}/items")
async def items_page(
    request: Request,
    batch_id: str,
    session: ReadSessionDep,
    user: FacultyUser,
    cursor: Annotated[int, Query(ge=-1, le=MAX_ITEM_INDEX, description="Item index the previous page ended at")] = -1,
) -> Response:
    batch = await reads.get_owned_batch(session, service.parse_batch_id(batch_id), user)
    page = await reads.generated_page(session, batch, after_index=cursor, limit=ITEMS_PAGE)
    keys = await reads.answer_keys_of(session, batch)
    context = {
        "user": user,
        "batch": await reads.batch_read(session, batch),
        "items": page.items,
        "total": await reads.count_generated(session, batch),
        "answer_keys": keys,
        "key_skew": answer_key_skew(keys),
        "next_cursor": page.next_cursor,
        "paged": cursor >= 0,
    }
    return render(request, "items.html", context)
