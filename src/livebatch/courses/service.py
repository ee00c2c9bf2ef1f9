from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.courses.models import Course
from livebatch.errors import BadRequest

_COURSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

DEMO_COURSES = (
    ("course-uuid-1", "CVP-301", "Cardiovascular Pathology"),
    ("course-renal-1", "RNP-210", "Renal Physiology"),
    ("course-pharm-1", "PHR-120", "Clinical Pharmacology"),
)


async def get_course(session: AsyncSession, course_id: str) -> Course | None:
    return await session.get(Course, course_id)


async def list_courses(session: AsyncSession) -> list[Course]:
    return list((await session.execute(select(Course).order_by(Course.title))).scalars())


async def put_course(session: AsyncSession, course_id: str, title: str, code: str | None = None) -> Course:
    """Adds the course, or renames it if it exists."""
    if not _COURSE_ID.match(course_id):
        raise BadRequest(f"{course_id!r} is not a valid course id (letters, digits, '.', '_', '-').")
    title = title.strip()
    if not title or len(title) > 200:
        raise BadRequest("A course title is 1 to 200 characters.")
    course = await session.get(Course, course_id)
    if course is None:
        course = Course(id=course_id, title=title, code=code)
        session.add(course)
    else:
        course.title = title
        if code is not None:
            course.code = code
    await session.flush()
    return course


async def seed_demo_courses(session: AsyncSession) -> None:
    for course_id, code, title in DEMO_COURSES:
        if await session.get(Course, course_id) is None:
            session.add(Course(id=course_id, code=code, title=title))
    await session.flush()
