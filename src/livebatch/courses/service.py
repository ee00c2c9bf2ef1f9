from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.courses import repository
from livebatch.courses.models import Course
from livebatch.errors import BadRequest

_COURSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

DEMO_COURSES = (
    ("course-uuid-1", "CVP-301", "Cardiovascular Pathology"),
    ("course-renal-1", "RNP-210", "Renal Physiology"),
    ("course-pharm-1", "PHR-120", "Clinical Pharmacology"),
)


async def put_course(session: AsyncSession, course_id: str, title: str, code: str | None = None) -> Course:
    """Adds the course, or renames it if it exists."""
    if not _COURSE_ID.match(course_id):
        raise BadRequest(f"{course_id!r} is not a valid course id (letters, digits, '.', '_', '-').")
    title = title.strip()
    if not title or len(title) > 200:
        raise BadRequest("A course title is 1 to 200 characters.")
    course = await repository.get_course(session, course_id)
    if course is None:
        return await repository.add_course(session, course_id, title, code)
    course.title = title
    if code is not None:
        course.code = code
    await session.flush()
    return course


async def seed_demo_courses(session: AsyncSession) -> None:
    for course_id, code, title in DEMO_COURSES:
        if await repository.get_course(session, course_id) is None:
            await repository.add_course(session, course_id, title, code)


async def ensure_demo_course(session: AsyncSession, course_id: str) -> None:
    """Adds the demo courses when `course_id` is one of them and missing (`run-batch` on a new database)."""
    if course_id in {c[0] for c in DEMO_COURSES} and await repository.get_course(session, course_id) is None:
        await seed_demo_courses(session)
