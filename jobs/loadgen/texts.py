"""Prompt text in nine languages other than English, for accounts whose gateway sends ``prompt_text``.

Most generated events carry the gateway's own classification (``topic``,
``elicits_reasoning``) and no text. Accounts of an archetype with ``Content.languages``
write in one language each: their events carry ``prompt_text`` and leave ``topic`` and
``elicits_reasoning`` out, so the pipeline derives both from the text
(``schemas/prompt_derive.py``), as it must for a gateway that does not classify
non-English prompts.

The sentences were written as ordinary requests in each language (not copied from the
cue file). A test checks that the derived topic of every frame is the topic it stands
for, that frames without a reasoning request derive no reasoning, and that every
reasoning request does. The text of a prompt is a function of its hash, topic,
reasoning flag and language, so a repeated prompt repeats its text.
Topics without their own frames (chat, education, history, ...) use everyday
requests, which derive no topic (``other``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# Frames per language and topic; {a}, {b}, {c} are numbers drawn from the prompt hash.
_FRAMES: Final = MappingProxyType({
    "zh": {
        "math": ("求解方程 {a}x + {b} = {c}，并验证结果。", "计算矩阵 [[{a}, {b}], [{b}, {a}]] 的行列式和特征值。"),
        "code": ("用 Python 写一个函数，返回前 {a} 个质数。", "这段代码在输入 {a} 时报错，请帮我调试。"),
        "science": ("为什么光合作用需要光？请说明第 {a} 步的化学变化。",),
        "legal": ("这份合同第 {a} 条的违约条款是否有效？",),
        "medical": ("患者出现发热 {a} 天并咳嗽，可能的诊断是什么？",),
        "finance": ("本金 {c} 元，年利率 {a}%，{b} 年后的贷款总额是多少？",),
        "writing": ("写一篇关于第 {a} 次远行的短文。",),
        "translation": ("把下面第 {a} 段话翻译成英文。",),
        "": ("周末去哪里玩比较好？推荐 {a} 个地方。", "怎样才能每天多睡 {a} 分钟？"),
    },
    "es": {
        "math": ("Resuelve la ecuación {a}x + {b} = {c}.",
                 "Calcula la probabilidad de sacar {a} caras en {b} lanzamientos."),
        "code": ("Implementa una función en Python que devuelva los primeros {a} números primos.",
                 "Este código falla con la entrada {a}; ayúdame a depurar."),
        "science": ("Explica la fotosíntesis y el papel de la molécula de clorofila en la fase {a}.",),
        "legal": ("¿Es válida la cláusula {a} de este contrato de alquiler?",),
        "medical": ("Un paciente tiene fiebre desde hace {a} días; ¿qué tratamiento recomiendas?",),
        "finance": ("Con una tasa de interés del {a}%, ¿cuánto pago por un préstamo de {c} euros?",),
        "writing": ("Escribe un poema corto sobre el número {a}.",),
        "translation": ("Traduce este párrafo {a} al inglés.",),
        "": ("¿Qué puedo cocinar para {a} personas con arroz y tomate?",
             "Recomiéndame {a} lugares para visitar en primavera."),
    },
    "ru": {
        "math": ("Реши уравнение {a}x + {b} = {c}.", "Найди вероятность выпадения {a} орлов при {b} бросках."),
        "code": ("Реализуй функцию на Python, которая возвращает первые {a} простых чисел.",
                 "Этот код на Python падает на входе {a}, помоги отладить."),
        "science": ("Объясни фотосинтез и роль молекулы хлорофилла на этапе {a}.",),
        "legal": ("Действителен ли пункт {a} этого договора аренды?",),
        "medical": ("У пациента температура уже {a} дней; какое лечение назначить?",),
        "finance": ("Какой будет платёж по кредиту {c} рублей под {a}% годовых?",),
        "writing": ("Напиши короткое стихотворение о числе {a}.",),
        "translation": ("Переведи этот абзац {a} на английский.",),
        "": ("Что приготовить на ужин для {a} человек?", "Посоветуй {a} мест для прогулки весной."),
    },
    "de": {
        "math": ("Löse die Gleichung {a}x + {b} = {c}.",
                 "Wie groß ist die Wahrscheinlichkeit, bei {b} Würfen {a} Mal Kopf zu werfen?"),
        "code": ("Implementiere eine Funktion in Python, die die ersten {a} Primzahlen liefert.",
                 "Dieser Quellcode stürzt bei Eingabe {a} ab, hilf mir beim Debuggen."),
        "science": ("Erkläre die Photosynthese und die Rolle des Chlorophyll-Moleküls in Phase {a}.",),
        "legal": ("Ist Klausel {a} in diesem Mietvertrag rechtlich wirksam?",),
        "medical": ("Ein Patient hat seit {a} Tagen Fieber; welche Behandlung ist sinnvoll?",),
        "finance": ("Wie hoch ist die Rate für einen Kredit über {c} Euro bei {a}% Zinsen?",),
        "writing": ("Schreibe ein kurzes Gedicht über die Zahl {a}.",),
        "translation": ("Übersetze diesen Absatz {a} ins Englische.",),
        "": ("Was kann ich für {a} Personen zum Abendessen kochen?",
             "Empfiehl mir {a} Ausflugsziele für das Wochenende."),
    },
    "fr": {
        "math": ("Résous l'équation {a}x + {b} = {c}.",
                 "Quelle est la probabilité d'obtenir {a} fois pile en {b} lancers ?"),
        "code": ("Implémente une fonction Python qui renvoie les {a} premiers nombres premiers.",
                 "Ce programme plante avec l'entrée {a}, aide-moi à le déboguer."),
        "science": ("Explique la photosynthèse et le rôle de la molécule de chlorophylle à la phase {a}.",),
        "legal": ("La clause {a} de ce contrat de location est-elle valable ?",),
        "medical": ("Un patient a de la fièvre depuis {a} jours ; quel traitement conseiller ?",),
        "finance": ("Quel est le coût d'un emprunt de {c} euros à {a}% ?",),
        "writing": ("Écris un poème court sur le nombre {a}.",),
        "translation": ("Fais la traduction de ce paragraphe {a} en anglais.",),
        "": ("Que puis-je cuisiner pour {a} personnes ce soir ?",
             "Conseille-moi {a} balades à faire au printemps."),
    },
    "ja": {
        "math": ("方程式 {a}x + {b} = {c} を解いてください。",
                 "{b} 回コインを投げて表が {a} 回出る確率を求めてください。"),
        "code": ("最初の {a} 個の素数を返す関数を Python で実装してください。",
                 "このコードは入力 {a} でエラーになります。デバッグを手伝ってください。"),
        "science": ("光合成の仕組みと、第 {a} 段階での分子の役割を説明してください。",),
        "legal": ("この契約の第 {a} 条項は有効ですか？",),
        "medical": ("患者が {a} 日間発熱しています。考えられる診断は？",),
        "finance": ("金利 {a}% で {c} 円のローンを組むと返済額はいくらですか？",),
        "writing": ("数字 {a} についての短い物語を書いてください。",),
        "translation": ("この段落 {a} を英語に翻訳してください。",),
        "": ("週末におすすめの過ごし方を {a} つ教えてください。", "{a} 人分の夕食の献立を考えてください。"),
    },
    "ko": {
        "math": ("방정식 {a}x + {b} = {c} 를 풀어 주세요.", "동전을 {b}번 던져 앞면이 {a}번 나올 확률을 구해 주세요."),
        "code": ("처음 {a}개의 소수를 반환하는 함수를 Python으로 구현해 주세요.",
                 "이 코드는 입력 {a}에서 오류가 납니다. 디버그를 도와주세요."),
        "science": ("광합성의 원리와 {a}단계에서 분자의 역할을 설명해 주세요.",),
        "legal": ("이 계약서의 제{a}조 조항은 유효한가요?",),
        "medical": ("환자가 {a}일째 열이 납니다. 어떤 치료가 필요할까요?",),
        "finance": ("금리 {a}%로 {c}원을 대출하면 월 상환액은 얼마인가요?",),
        "writing": ("숫자 {a}에 관한 짧은 에세이를 써 주세요.",),
        "translation": ("이 문단 {a}을 영어로 번역해 주세요.",),
        "": ("주말에 가볼 만한 곳을 {a}곳 추천해 주세요.", "{a}명이 먹을 저녁 메뉴를 골라 주세요."),
    },
    "pt": {
        "math": ("Resolva a equação {a}x + {b} = {c}.", "Qual é a probabilidade de sair {a} caras em {b} lançamentos?"),
        "code": ("Implemente uma função em Python que retorne os {a} primeiros números primos.",
                 "Este código falha com a entrada {a}; ajude-me a depurar."),
        "science": ("Explique a fotossíntese e o papel da molécula de clorofila na fase {a}.",),
        "legal": ("A cláusula {a} deste contrato de aluguel é válida?",),
        "medical": ("Um paciente tem febre há {a} dias; qual tratamento recomendar?",),
        "finance": ("Quanto pago por um empréstimo de {c} reais com taxa de juros de {a}%?",),
        "writing": ("Escreva um poema curto sobre o número {a}.",),
        "translation": ("Traduza este parágrafo {a} para o inglês.",),
        "": ("O que posso cozinhar para {a} pessoas hoje à noite?", "Recomende {a} lugares para visitar na primavera."),
    },
    "ar": {
        "math": ("حل المعادلة {a}س + {b} = {c}.", "ما احتمال ظهور الوجه {a} مرات في {b} رميات؟"),
        "code": ("أنشئ برنامج بايثون يعيد أول {a} أعداد أولية.", "هذا الكود يتعطل عند الإدخال {a}، ساعدني في إصلاحه."),
        "science": ("اشرح عملية التمثيل الضوئي ودور جزيء الكلوروفيل في المرحلة {a}.",),
        "legal": ("هل البند {a} في عقد الإيجار هذا قانوني؟",),
        "medical": ("مريض يعاني من الحمى منذ {a} أيام، ما العلاج المناسب؟",),
        "finance": ("كم القسط الشهري لقرض قيمته {c} بسعر الفائدة {a}%؟",),
        "writing": ("اكتب قصيدة قصيرة عن الرقم {a}.",),
        "translation": ("ترجم هذه الفقرة {a} إلى الإنجليزية.",),
        "": ("ماذا أطبخ لـ {a} أشخاص على العشاء؟", "اقترح {a} أماكن للزيارة في الربيع."),
    },
})  # fmt: skip

# Requests for step-by-step reasoning, appended to a frame when the prompt elicits reasoning.
_REASONING: Final = MappingProxyType({
    "zh": ("请一步一步地推理，并写出完整的推理过程。", "请先展示你的推理，再给出答案。"),
    "es": ("Razona paso a paso y muestra todo tu razonamiento.", "Explica tu razonamiento antes de dar la respuesta."),
    "ru": ("Рассуждай шаг за шагом и покажи ход рассуждений.", "Объясни своё рассуждение, прежде чем ответить."),
    "de": ("Denke Schritt für Schritt und zeige deinen Lösungsweg.", "Begründe ausführlich, bevor du antwortest."),
    "fr": ("Raisonne étape par étape et montre ton raisonnement.", "Explique ton raisonnement avant de répondre."),
    "ja": ("ステップバイステップで考え、推論過程を示してください。", "順を追って、考え方を示してください。"),
    "ko": ("단계별로 생각하고 추론 과정을 보여 주세요.", "차근차근 풀이 과정을 설명해 주세요."),
    "pt": ("Pense passo a passo e mostre seu raciocínio.", "Explique seu raciocínio antes de responder."),
    "ar": ("فكر خطوة بخطوة واشرح استدلالك.", "أظهر تفكيرك قبل الإجابة."),
})  # fmt: skip

LANGUAGES: Final = tuple(_FRAMES)
TEXT_TOPICS: Final = frozenset(t for frames in _FRAMES.values() for t in frames if t)  # topics with own frames
_OTHER = ""


def frames(language: str, topic: str) -> tuple[str, ...]:
    """The frames a prompt on ``topic`` is written from (everyday requests for a topic without its own)."""
    by_topic = _FRAMES[language]
    return by_topic.get(topic, by_topic[_OTHER])


def reasoning_requests(language: str) -> tuple[str, ...]:
    return _REASONING[language]


def prompt_text(language: str, topic: str, reason: bool, phash: int) -> str:
    """The text of one prompt: a frame of its topic, numbers and choices from its hash."""
    options = frames(language, topic)
    text = options[phash % len(options)].format(a=2 + (phash >> 8) % 97, b=1 + (phash >> 16) % 50,
                                                c=(phash >> 24) % 1000)
    if reason:
        requests = reasoning_requests(language)
        text = f"{text} {requests[(phash >> 40) % len(requests)]}"
    return text
