"""The offline provider: realistic latency, occasional failures, well-formed items, no network.

Everything is drawn from a random generator seeded by (batch, item, requeues, attempt), so a run can be
replayed: the same item gets the same question, and the same attempt fails the same way. `requeues` counts
the times "Retry failed" queued the item again, which starts its attempts over: without it in the seed, a
retried item would draw its first attempts again and fail exactly as before. Each answer reports plausible
usage, priced as the model `offline`: the prompt a real provider would get (about 200 tokens), and about a
token per four characters of the item written; an attempt that got no answer (a timeout, a 429, a 503)
reports none.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from livebatch.batches.events import ErrorKind
from livebatch.batches.questions import LABELS, Difficulty, Option, Question
from livebatch.generation.providers import Generated, GenerationError, ItemRequest, Usage

OFFLINE_MODEL = "offline"


@dataclass(frozen=True, slots=True)
class Vignette:
    stem: str
    answer: str
    distractors: tuple[str, ...]
    explanation: str


# Each stem takes {age} and {sex}; the answer and four distractors become options A-E in a seeded order.
BANK: tuple[Vignette, ...] = (
    Vignette(
        "A {age}-year-old {sex} has crushing substernal chest pain for 40 minutes. The ECG shows ST elevation "
        "in leads II, III and aVF. Which coronary artery is most likely occluded?",
        "Right coronary artery",
        (
            "Left anterior descending artery",
            "Left circumflex artery",
            "Left main coronary artery",
            "First diagonal branch",
            "Posterior interventricular branch of the left circumflex",
        ),
        "Inferior leads (II, III, aVF) face the territory supplied by the right coronary artery in most people.",
    ),
    Vignette(
        "A {age}-year-old {sex} dies suddenly three days after a transmural anterior myocardial infarction. "
        "Autopsy shows blood in the pericardial sac. Which complication is most likely?",
        "Rupture of the left ventricular free wall",
        (
            "Papillary muscle rupture",
            "Fibrinous pericarditis",
            "Ventricular aneurysm",
            "Mural thrombus",
            "Dressler syndrome",
        ),
        "Free-wall rupture peaks 3-7 days after infarction, when macrophages soften the necrotic wall, "
        "and causes haemopericardium with tamponade.",
    ),
    Vignette(
        "A {age}-year-old {sex} with a history of rheumatic fever has dyspnoea and an opening snap followed "
        "by a diastolic rumble at the apex. Which valve lesion is most likely?",
        "Mitral stenosis",
        (
            "Aortic stenosis",
            "Mitral regurgitation",
            "Tricuspid regurgitation",
            "Aortic regurgitation",
            "Pulmonary stenosis",
        ),
        "Chronic rheumatic heart disease most often causes mitral stenosis, heard as an opening snap and a "
        "mid-diastolic rumble.",
    ),
    Vignette(
        "A {age}-year-old {sex} has fever, a new murmur and splinter haemorrhages after dental work. Which "
        "organism is the most likely cause?",
        "Viridans group streptococci",
        (
            "Staphylococcus aureus",
            "Staphylococcus epidermidis",
            "Enterococcus faecalis",
            "Streptococcus bovis",
            "Candida albicans",
        ),
        "Subacute endocarditis of previously damaged valves after dental procedures is classically caused "
        "by viridans streptococci from the oral flora.",
    ),
    Vignette(
        "A {age}-year-old {sex} who competes in basketball collapses during a game. Autopsy shows asymmetric "
        "septal hypertrophy with myocyte disarray. Which protein is most often mutated in this disease?",
        "Beta-myosin heavy chain",
        ("Dystrophin", "Titin", "Lamin A/C", "Desmoplakin", "Transthyretin"),
        "Hypertrophic cardiomyopathy is most often caused by mutations of sarcomere genes, chiefly "
        "beta-myosin heavy chain (MYH7).",
    ),
    Vignette(
        "A {age}-year-old {sex} has tearing chest pain radiating to the back and unequal arm blood pressures. "
        "Which is the most important predisposing condition?",
        "Systemic hypertension",
        (
            "Atherosclerosis of the abdominal aorta",
            "Giant cell arteritis",
            "Tertiary syphilis",
            "Kawasaki disease",
            "Polyarteritis nodosa",
        ),
        "Hypertension is the main risk factor for aortic dissection; it damages the media through "
        "narrowing of the vasa vasorum.",
    ),
    Vignette(
        "A {age}-year-old {sex} has a loud pansystolic murmur a week after an inferior infarction, with "
        "sudden pulmonary oedema. Which structure has most likely ruptured?",
        "Posteromedial papillary muscle",
        (
            "Anterolateral papillary muscle",
            "Interventricular septum",
            "Chordae of the tricuspid valve",
            "Left ventricular free wall",
            "Aortic valve cusp",
        ),
        "The posteromedial papillary muscle has a single blood supply (usually the right coronary artery), "
        "so inferior infarcts can rupture it and cause acute mitral regurgitation.",
    ),
    Vignette(
        "A {age}-year-old {sex} has heart failure; endomyocardial biopsy shows apple-green birefringence "
        "under polarised light after Congo red staining. Which is the most likely diagnosis?",
        "Cardiac amyloidosis",
        (
            "Cardiac sarcoidosis",
            "Haemochromatosis",
            "Giant cell myocarditis",
            "Endocardial fibroelastosis",
            "Loeffler endocarditis",
        ),
        "Congo red staining with apple-green birefringence identifies amyloid, which causes a restrictive "
        "cardiomyopathy.",
    ),
    Vignette(
        "A {age}-year-old {sex} has a fixed, widely split second heart sound and a systolic ejection murmur "
        "at the upper left sternal border. Which defect is most likely?",
        "Atrial septal defect",
        (
            "Ventricular septal defect",
            "Patent ductus arteriosus",
            "Coarctation of the aorta",
            "Tetralogy of Fallot",
            "Ebstein anomaly",
        ),
        "A left-to-right shunt through an atrial septal defect keeps right ventricular output high in both "
        "phases of respiration, so S2 splitting is fixed.",
    ),
    Vignette(
        "A {age}-year-old {sex} has pleuritic chest pain relieved by leaning forward and a friction rub, "
        "two weeks after a myocardial infarction. Which mechanism best explains it?",
        "Autoimmune reaction to myocardial antigens",
        (
            "Bacterial infection of the pericardium",
            "Rupture of the ventricular wall",
            "Uraemic irritation of the pericardium",
            "Malignant pericardial effusion",
            "Thrombus in the left atrial appendage",
        ),
        "Dressler syndrome is an autoimmune pericarditis weeks after infarction, against antigens exposed "
        "by myocardial necrosis.",
    ),
)

_FAILURES: tuple[tuple[ErrorKind, str], ...] = (
    ("timeout", "LLM provider timeout after 30s"),
    ("timeout", "LLM provider timeout after 30s"),
    ("rate_limited", "Rate limited by the provider (HTTP 429)"),
    ("provider_error", "Provider error: HTTP 503 Service Unavailable"),
    ("validation", ""),
)

_DIFFICULTY_LEAD = {
    "easy": "",
    "medium": "Consider the most likely explanation. ",
    "hard": "Several findings are compatible; choose the single best answer. ",
}


def compose(request: ItemRequest) -> Question:
    """The question for this item; the same request always gives the same question."""
    rng = random.Random(f"{request.batch_id}:{request.item_index}:content")
    vignette = rng.choice(BANK)
    texts = [vignette.answer, *rng.sample(vignette.distractors, 4)]
    rng.shuffle(texts)
    options = [Option(label=label, text=text) for label, text in zip(LABELS, texts, strict=True)]
    answer = LABELS[texts.index(vignette.answer)]
    stem = vignette.stem.format(age=rng.randint(24, 78), sex=rng.choice(("man", "woman")))
    return Question(
        stem=_DIFFICULTY_LEAD.get(request.difficulty, "") + stem,
        options=options,
        answer=answer,
        explanation=vignette.explanation,
        difficulty=cast(Difficulty, request.difficulty),
    )


def _seed(request: ItemRequest) -> str:
    # A first run keeps the seed it always had (recorded runs replay the same); a requeued item draws anew.
    draw = f"{request.requeues}:" if request.requeues else ""
    return f"{request.batch_id}:{request.item_index}:{draw}{request.attempt}"


def usage_of(request: ItemRequest, question: Question) -> Usage:
    """Plausible token counts for one answer: a prompt of about 200 tokens, a token per 4 characters written."""
    rng = random.Random(f"{_seed(request)}:usage")
    written = len(question.stem) + len(question.explanation) + sum(len(o.text) + 12 for o in question.options)
    return Usage(prompt_tokens=190 + rng.randint(0, 20), completion_tokens=written // 4 + 40, model=OFFLINE_MODEL)


class OfflineProvider:
    name = "offline"

    def __init__(
        self,
        *,
        latency_ms: int,
        failure_rate: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self._sleep = sleep  # the latency's only effect; a test can watch it instead of waiting

    async def generate(self, request: ItemRequest) -> Generated:
        rng = random.Random(_seed(request))
        if self.latency_ms:
            await self._sleep(self.latency_ms * rng.uniform(0.5, 1.5) / 1000)
        question = compose(request)
        if rng.random() < self.failure_rate:
            kind, message = rng.choice(_FAILURES)
            if kind != "validation":
                raise GenerationError(kind, message)
            # A model that repeats itself: the item reaches validation and is rejected there.
            options = list(question.options)
            options[3] = Option(label="D", text=options[1].text)
            question = question.model_copy(update={"options": options})
        return Generated(question, usage_of(request, question))

    async def aclose(self) -> None:
        pass
