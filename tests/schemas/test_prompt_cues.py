"""Cues derived from prompt_text: reasoning elicitation, judge phrasings, topics, in ten languages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from schemas.event import ApiCallEvent
from schemas.prompt_cues import CUES, CUES_PATH, OTHER_TOPIC, _trie_regex, load_cues
from schemas.prompt_derive import DERIVED_FIELDS, derive_from_prompt
from schemas.prompt_hashing import normalise_prompt, prompt_hash_hex, prompt_simhash_hex
from tests.support.events import MINIMAL

# (language, asks for reasoning, judge/rubric phrasing, hard negative: a long-answer request that is neither)
BY_LANGUAGE: list[tuple[str, str, str, str]] = [
    ("en", "Solve it Step  By Step and show your full reasoning.", "Act as a grader: score the response.",
     "Write a detailed, long answer about the history of Lisbon."),
    ("zh", "请一步一步地思考并给出推理过程。", "你作为评委，按照评分标准给回答打分。",
     "请详细介绍一下北京的历史和文化，越长越好。"),
    ("es", "Resuélvelo paso a paso, por favor.", "Actúa como juez y califica la respuesta.",
     "Cuéntame con mucho detalle la historia de Sevilla."),
    ("ru", "Реши задачу шаг за шагом.", "Выступи в роли судьи: оцени ответ по шкале от 1 до 10.",
     "Расскажи подробно об истории Санкт-Петербурга."),
    ("de", "Erkläre Schritt für Schritt, wie man das löst.", "Du bist ein Prüfer; nutze das Bewertungsschema.",
     "Erzähl mir ausführlich von der Geschichte Hamburgs."),
    ("fr", "Explique étape par étape.", "Agis comme un évaluateur et note la réponse.",
     "Raconte-moi longuement l'histoire de Lyon."),
    ("ja", "ステップバイステップで考えてください。", "あなたは採点者です。採点基準に従ってください。",
     "京都の歴史について詳しく長く説明してください。"),
    ("ko", "단계별로 풀이 과정을 보여 주세요.", "채점자로서 채점 기준에 따라 답변을 평가하세요.",
     "서울의 역사에 대해 길고 자세하게 설명해 주세요."),
    ("pt", "Resolva passo a passo.", "Atue como avaliador e avalie a resposta.",
     "Conte-me em detalhes a história do Porto."),
    ("ar", "حل المسألة خطوة بخطوة.", "تصرف كمقيم واستخدم معايير التقييم.", "حدثني بالتفصيل عن تاريخ القاهرة."),
]

TOPIC_CASES: list[tuple[str, str]] = [
    ("Write a Python function that parses a CSV file", "code"),
    ("编写一个函数来排序数组", "code"),
    ("Résoudre l'équation et calculer l'intégrale", "math"),
    ("Объясни, как работает фотосинтез в хлоропластах и при чём тут молекулы", "science"),
    ("Prüfe diesen Vertrag auf problematische Klauseln", "legal"),
    ("患者の症状から考えられる診断は何ですか", "medical"),
    ("¿Cuál es la mejor estrategia de inversión para pagar menos impuestos?", "finance"),
    ("Escreva um poema sobre o mar", "writing"),
    ("이 문장을 영어로 번역해 주세요", "translation"),
    ("ترجم هذه الرسالة إلى الإنجليزية", "translation"),
    ("Hello, how are you today?", OTHER_TOPIC),
]


@pytest.mark.parametrize("lang, reasoning, judge, negative", BY_LANGUAGE)
def test_elicitation_and_judge_phrases_in_every_language(lang: str, reasoning: str, judge: str,
                                                         negative: str) -> None:
    assert CUES.elicits_reasoning(normalise_prompt(reasoning)), lang
    assert CUES.elicits_reasoning(normalise_prompt(judge)), lang
    # A non-English app asking for long answers is not eliciting reasoning.
    assert not CUES.elicits_reasoning(normalise_prompt(negative)), lang


def test_every_language_has_phrases_in_every_list() -> None:
    data = json.loads(CUES_PATH.read_text(encoding="utf-8"))
    langs = {lang for lang, *_ in BY_LANGUAGE}
    assert set(data["reasoning"]) == set(data["judge"]) == langs
    for topic, by_language in data["topics"].items():
        assert set(by_language) == langs, topic


@pytest.mark.parametrize("text, topic", TOPIC_CASES)
def test_topic(text: str, topic: str) -> None:
    assert CUES.topic(normalise_prompt(text)) == topic


def test_topic_names_fit_the_contract_field() -> None:
    assert OTHER_TOPIC in CUES.topics and all(0 < len(t) <= 64 for t in CUES.topics)


def test_phrases_match_at_word_starts_except_in_unbounded_scripts() -> None:
    assert CUES.topic(normalise_prompt("a regexp question")) == "code"  # a stem matches its inflections
    assert not CUES.elicits_reasoning(normalise_prompt("footstep by stepping"))  # not inside a word
    assert CUES.elicits_reasoning(normalise_prompt("请逐步说明"))  # CJK: no word boundaries


def test_trie_regex_accepts_exactly_its_phrases() -> None:
    phrases = ["step", "step by step", "steps", "stop", "sté", "a+b", "逐步", "逐"]
    rx = re.compile(_trie_regex(phrases))
    for p in phrases:
        assert rx.fullmatch(p), p
    for p in ["ste", "step by", "stepss", "st", "a", "ab", "步", ""]:
        assert not rx.fullmatch(p), p
    # findall returns whole phrases, longest first where they overlap
    assert rx.findall("steps step by step stop") == ["steps", "step by step", "stop"]


def test_a_phrase_under_two_topics_is_refused(tmp_path: Path) -> None:
    data = json.loads(CUES_PATH.read_text(encoding="utf-8"))
    data["topics"]["math"]["en"].append("Python")
    path = tmp_path / "cues.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"Python.*code.*math"):
        load_cues(path)


def test_derive_from_prompt_computes_only_what_is_asked() -> None:
    text = "Prove that the integral converges, step by step."
    assert derive_from_prompt(text, ()) == {}
    assert derive_from_prompt(text, DERIVED_FIELDS) == {
        "prompt_hash": prompt_hash_hex(text), "prompt_simhash": prompt_simhash_hex(text),
        "topic": "math", "elicits_reasoning": True}
    with pytest.raises(ValueError):
        derive_from_prompt(text, ["model"])


def parse(obj: dict[str, Any]) -> ApiCallEvent:
    return ApiCallEvent.model_validate_json(json.dumps(obj))


def test_the_model_derives_absent_fields_and_keeps_given_ones() -> None:
    text = "Действуй шаг за шагом: реши уравнение"
    e = parse({**MINIMAL, "prompt_text": text})
    assert (e.topic, e.elicits_reasoning, e.prompt_text) == ("math", True, None)
    assert "prompt_text" not in e.model_dump() and text not in e.model_dump_json()
    given = parse({**MINIMAL, "prompt_text": text, "topic": "chat", "elicits_reasoning": False})
    assert (given.topic, given.elicits_reasoning) == ("chat", False)  # the classifier wins
    null_topic = parse({**MINIMAL, "prompt_text": text, "topic": None})
    assert null_topic.topic == "math"
    without_text = parse(MINIMAL)
    assert (without_text.topic, without_text.elicits_reasoning) == (None, False)
