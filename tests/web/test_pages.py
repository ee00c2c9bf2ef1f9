"""The pages as HTML over HTTP (no browser): sign-in redirects, error pages that leak nothing, the lists,
escaping, and the headers. The app runs in process with no worker, so batches stay where a test puts
them; plain HTML responses are fine over ASGITransport."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.app import create_app
from livebatch.auth import COOKIE, mint_token
from livebatch.batches import service, work
from livebatch.batches.models import Batch
from livebatch.batches.questions import Option, Question
from livebatch.batches.schemas import BatchCreate, DifficultyDistribution
from livebatch.batches.work import Claim
from livebatch.config import Settings
from livebatch.courses.service import put_course
from livebatch.parts import Parts
from livebatch.users.models import User
from livebatch.web import pages
from tests.checks import Unqueued
from tests.conftest import Person

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
async def quiet_parts(settings: Settings) -> AsyncIterator[Parts]:
    rt = Parts(settings, worker=False)
    await rt.start()
    yield rt
    await rt.aclose()


@pytest.fixture
async def web(quiet_parts: Parts) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(parts=quiet_parts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


def signed_in(person: Person) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={person.token}"}


async def make_batch(rt: Parts, owner: User, count: int = 3, course: str = "course-uuid-1") -> Batch:
    """A batch that stays queued: committed without queueing its items (no worker here anyway)."""
    async with Unqueued(rt.db).begin() as uow:
        spec = BatchCreate(
            course_id=course,
            target_count=count,
            difficulty_distribution=DifficultyDistribution(easy=30, medium=50, hard=20),
        )
        batch = await service.create_batch(uow, spec, owner=owner, limits=rt.limits, now=rt.now())
        await uow.commit()
    return batch


async def complete_first_item(rt: Parts, batch: Batch, question: Question) -> None:
    async with Unqueued(rt.db).begin() as uow:
        items = await _items(uow.session, batch)
        claim = await work.claim_item(uow, items[0], now=rt.now(), lease=timedelta(seconds=30))
        assert isinstance(claim, Claim)
        await uow.commit()
    async with Unqueued(rt.db).begin() as uow:
        question = question.model_copy(update={"difficulty": claim.difficulty})
        assert await work.complete_item(uow, claim, question, now=rt.now())
        await uow.commit()


async def _items(session: AsyncSession, batch: Batch) -> list[UUID]:
    from sqlalchemy import select

    from livebatch.batches.models import Item

    return list((await session.execute(select(Item.id).where(Item.batch_id == batch.id).order_by(Item.idx))).scalars())


def page_paths(batch_id: str) -> list[str]:
    return [
        "/faculty/generate/batches",
        "/faculty/generate/batch/new",
        f"/faculty/generate/batch/{batch_id}",
        f"/faculty/generate/batch/{batch_id}/items",
    ]


async def test_without_a_session_every_page_sends_the_visitor_to_sign_in(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    batch = await make_batch(quiet_parts, people["faculty"].user)
    for path in [*page_paths(str(batch.id)), "/faculty/settings"]:
        for headers in ({}, {"Cookie": f"{COOKIE}=not-a-token"}):
            response = await web.get(path, headers=headers)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/signin?next={quote(path, safe='/')}"
        signin = await web.get(response.headers["location"])
        assert signin.status_code == 200
        assert signin.headers["content-type"].startswith("text/html")
        assert f"livebatch login-link --next '{path}'" in signin.text


async def test_an_expired_session_also_leads_to_sign_in(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    old = mint_token(quiet_parts.settings, people["faculty"].user, now=quiet_parts.now() - timedelta(days=2))
    response = await web.get("/faculty/generate/batches", headers={"Cookie": f"{COOKIE}={old}"})
    assert response.status_code == 303 and response.headers["location"].startswith("/signin?next=")


async def test_sign_in_help_only_leads_back_to_this_site(web: httpx.AsyncClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        page = await web.get("/signin", params={"next": target})
        assert "evil" not in page.text and "javascript:" not in page.text
        assert "livebatch login-link --next '/faculty/generate/batches'" in page.text


async def test_another_facultys_batch_is_a_403_page_that_shows_nothing_of_it(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    async with quiet_parts.db.session() as session:
        await put_course(session, "course-secret-1", "Secret Course Title")
        await session.commit()
    batch = await make_batch(quiet_parts, people["faculty"].user, course="course-secret-1")
    for path in page_paths(str(batch.id))[2:]:
        response = await web.get(path, headers=signed_in(people["other"]))
        assert response.status_code == 403, path
        assert response.headers["content-type"].startswith("text/html")
        assert "This batch belongs to someone else." in response.text
        assert "Secret Course Title" not in response.text and "course-secret-1" not in response.text
    history = await web.get("/faculty/generate/batches", headers=signed_in(people["other"]))
    assert str(batch.id) not in history.text and "Secret Course Title" not in history.text


async def test_a_student_gets_a_403_page(web: httpx.AsyncClient, people: dict[str, Person]) -> None:
    response = await web.get("/faculty/generate/batches", headers=signed_in(people["student"]))
    assert response.status_code == 403
    assert "Only faculty members can generate items." in response.text


@pytest.mark.parametrize(
    "path",
    [
        f"/faculty/generate/batch/{uuid4()}",
        f"/faculty/generate/batch/{uuid4()}/items",
        "/faculty/generate/batch/not-a-batch",
        "/faculty/nothing-here",
    ],
)
async def test_an_unknown_batch_or_page_is_a_404_page(
    web: httpx.AsyncClient, people: dict[str, Person], path: str
) -> None:
    response = await web.get(path, headers=signed_in(people["faculty"]))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert '<h1 id="error-title">Not found</h1>' in response.text


async def test_error_pages_keep_the_nav_bar(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    """A 403 or 404 page is no dead end: the way back to the batches and to a new one is where it always is."""
    theirs = await make_batch(quiet_parts, people["other"].user)
    for path, status in ((f"/faculty/generate/batch/{theirs.id}", 403), ("/faculty/nothing-here", 404)):
        response = await web.get(path, headers=signed_in(people["faculty"]))
        assert response.status_code == status
        assert '<nav aria-label="Main">' in response.text
        assert (
            'href="/faculty/generate/batches"' in response.text
            and 'href="/faculty/generate/batch/new"' in response.text
        )


def test_one_ellipsis_everywhere() -> None:
    """Text the pages show ends with "…", never "...": in the templates and in the modules' strings (a
    spread `...x` is code, never inside quotes)."""
    web = Path(pages.__file__).parent
    for template in (web / "templates").glob("*.html"):
        assert "..." not in template.read_text(), template.name
    for module in (web / "static").glob("*.js"):
        code = re.sub(r"^\s*//.*$|^\s*/?\*.*$", "", module.read_text(), flags=re.MULTILINE)  # comments aside
        assert not re.findall(r"[\"'`][^\"'`\n]*\.\.\.[^\"'`\n]*[\"'`]", code), module.name


async def test_the_api_keeps_answering_json_errors(web: httpx.AsyncClient, people: dict[str, Person]) -> None:
    response = await web.get(f"/api/v1/generation/batch/{uuid4()}", headers=signed_in(people["faculty"]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert (await web.get("/api/v1/generation/batches")).json()["error"]["code"] == "UNAUTHORIZED"


async def test_a_bad_query_on_a_page_is_a_422_page(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    batch = await make_batch(quiet_parts, people["faculty"].user)
    response = await web.get(
        f"/faculty/generate/batch/{batch.id}/items", params={"cursor": "abc"}, headers=signed_in(people["faculty"])
    )
    assert response.status_code == 422 and response.headers["content-type"].startswith("text/html")
    assert "cursor" in response.text


async def test_the_history_lists_ones_own_batches_newest_first_in_pages(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "HISTORY_PAGE", 2)
    mine = [await make_batch(quiet_parts, people["faculty"].user, count=n) for n in (1, 2, 3)]
    theirs = await make_batch(quiet_parts, people["other"].user)
    first = await web.get("/faculty/generate/batches", headers=signed_in(people["faculty"]))
    assert first.status_code == 200
    assert str(theirs.id) not in first.text
    assert first.text.index(str(mine[2].id)) < first.text.index(str(mine[1].id))
    assert str(mine[0].id) not in first.text
    assert f'href="/faculty/generate/batch/{mine[2].id}"' in first.text
    assert "Queued" in first.text and "0 / 3 completed" in first.text
    assert f'href="/faculty/generate/batches?before={mine[1].id}"' in first.text
    older = await web.get(f"/faculty/generate/batches?before={mine[1].id}", headers=signed_in(people["faculty"]))
    assert str(mine[0].id) in older.text and str(mine[2].id) not in older.text
    assert "Older batches" not in older.text


async def test_the_form_offers_the_courses_of_the_courses_table(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    async with quiet_parts.db.session() as session:
        await put_course(session, "course-neuro-1", f"Neuroanatomy {HOSTILE}", "NEU-101")
        await session.commit()
    page = await web.get("/faculty/generate/batch/new", headers=signed_in(people["faculty"]))
    assert '<option value="course-neuro-1">Neuroanatomy &lt;script&gt;' in page.text
    assert '<option value="course-uuid-1">Cardiovascular Pathology (CVP-301)</option>' in page.text
    assert f'max="{quiet_parts.settings.max_target_count}"' in page.text


async def test_generated_items_read_as_questions_with_the_key_and_are_escaped(
    web: httpx.AsyncClient, quiet_parts: Parts, people: dict[str, Person]
) -> None:
    batch = await make_batch(quiet_parts, people["faculty"].user)
    question = Question(
        stem=f"A stem with {HOSTILE} in it?",
        options=[Option(label=label, text=f"Option {label}") for label in "ABCDE"],  # type: ignore[arg-type]
        answer="C",
        explanation="Because <b>C</b>.",
        difficulty="easy",
    )
    await complete_first_item(quiet_parts, batch, question)
    page = await web.get(f"/faculty/generate/batch/{batch.id}/items", headers=signed_in(people["faculty"]))
    assert page.status_code == 200
    assert HOSTILE not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert "Because &lt;b&gt;C&lt;/b&gt;." in page.text
    assert 'id="item-0"' in page.text
    assert '<li class="option correct" data-label="C">' in page.text and "Answer key" in page.text
    assert page.text.count("Answer key") == 1


async def complete_items_keyed(rt: Parts, batch: Batch, keys: str) -> None:
    """Completes the batch's first items, one per letter of `keys`, each keyed that letter."""
    async with Unqueued(rt.db).begin() as uow:
        ids = await _items(uow.session, batch)
    for item_id, key in zip(ids, keys, strict=False):
        async with Unqueued(rt.db).begin() as uow:
            claim = await work.claim_item(uow, item_id, now=rt.now(), lease=timedelta(seconds=30))
            assert isinstance(claim, Claim)
            await uow.commit()
        question = Question(
            stem="Which artery is occluded?",
            options=[Option(label=label, text=f"Artery {label}") for label in "ABCDE"],  # type: ignore[arg-type]
            answer=key,  # type: ignore[arg-type]
            explanation=f"Artery {key}.",
            difficulty=claim.difficulty,  # type: ignore[arg-type]
        )
        async with Unqueued(rt.db).begin() as uow:
            assert await work.complete_item(uow, claim, question, now=rt.now())
            await uow.commit()


@pytest.mark.parametrize(
    ("keys", "shown", "flagged"),
    [
        ("ABCDEBADCE", {"A": 2, "B": 2, "C": 2, "D": 2, "E": 2}, None),
        ("AAAAAAAAAB", {"A": 9, "B": 1, "C": 0, "D": 0, "E": 0}, "9 of 10 items (90 %) are keyed A"),
    ],
)
async def test_the_items_page_shows_the_answer_keys_and_flags_a_lopsided_batch(
    web: httpx.AsyncClient,
    quiet_parts: Parts,
    people: dict[str, Person],
    keys: str,
    shown: dict[str, int],
    flagged: str | None,
) -> None:
    batch = await make_batch(quiet_parts, people["faculty"].user, count=10)
    await complete_items_keyed(quiet_parts, batch, keys)
    page = await web.get(f"/faculty/generate/batch/{batch.id}/items", headers=signed_in(people["faculty"]))
    for letter, count in shown.items():
        assert (
            f'<li data-label="{letter}"><span class="label">{letter}</span>\n'
            f'        <meter min="0" max="10" value="{count}"></meter> <span class="count">{count}</span></li>'
        ) in page.text
    if flagged is None:
        assert "Lopsided key" not in page.text
    else:
        assert f'<p class="key-warning" role="status">Lopsided key: {flagged}' in page.text
    # The API's batch detail carries the same counts.
    detail = await web.get(f"/api/v1/generation/batch/{batch.id}", headers=people["faculty"].headers)
    assert detail.json()["answerKeys"] == shown


async def test_pages_send_a_strict_content_security_policy(web: httpx.AsyncClient, people: dict[str, Person]) -> None:
    page = await web.get("/faculty/generate/batches", headers=signed_in(people["faculty"]))
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "name",
    [
        "page.js",
        "reduce.js",
        "render.js",
        "format.js",
        "new.js",
        "localtime.js",
        "eta.js",
        "feedtools.js",
        "confirm.js",
        "failures.js",
        "notify.js",
        "settings.js",
    ],
)
async def test_the_modules_are_served_as_javascript_and_revalidated(web: httpx.AsyncClient, name: str) -> None:
    response = await web.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "no-cache"
    assert "innerHTML" not in response.text and "insertAdjacentHTML" not in response.text


async def test_the_root_leads_to_the_history(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/faculty/generate/batches"
