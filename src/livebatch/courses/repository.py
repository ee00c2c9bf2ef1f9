"""Every query of courses, session first."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.courses.models import Course


async def get_course(session: AsyncSession, course_id: str) -> Course | None:
    return await session.get(Course, course_id)


async def list_courses(session: AsyncSession) -> list[Course]:
    return list((await session.execute(select(Course).order_by(Course.title))).scalars())


async def add_course(session: AsyncSession, course_id: str, title: str, code: str | None) -> Course:
    course = Course(id=course_id, title=title, code=code)
    session.add(course)
    await session.flush()
    return course
