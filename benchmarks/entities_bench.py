"""Times entity extraction (nlu.entities.extract_entities) on ~500 typical utterances: median, p90,
p99 and max per utterance, the first (cold) call, and the share of each extractor.

Usage: python -m benchmarks.entities_bench [--utterances 500] [--rounds 20] [--seed 7]
Utterances are generated from templates (callers' phrasing, with and without entities); the
hospital table is config/nlu/hospitals.yml when it exists.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
HOSPITALS = ROOT / "config" / "nlu" / "hospitals.yml"
REFERENCE = datetime(2026, 6, 3, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

FILLERS = ["", "那个，", "就是，", "哎呀，", "喂，你好，", "同志啊，", "我跟你说啊，"]
RELATIONS = ["我", "我老伴", "我儿子", "我闺女", "我家老头子", "我孙女", "隔壁邻居", "我爱人"]
DATES = ["", "明天", "下周三", "上个月", "3月5号", "昨天", "前天", "这周五", "月底", "5号"]
HOSPITALS_SAID = ["市一院", "市第一人民医院", "县医院", "中医院", "北京协和医院", "附属医院"]
AMOUNTS = ["三百五十块", "350块", "两千多块钱", "一万二", "1.5万", "八十块钱", "三百五"]
TEMPLATES = [
    "{f}{r}{d}在{h}看病花了{a}，能报销吗",
    "{f}{r}的药费{a}，发票丢了咋整",
    "{f}{r}{d}要转院到{h}，手续咋办",
    "{f}{r}摔倒了，快来人啊",
    "{f}我要投诉物业，{d}说好来修的到现在没人",
    "{f}帮我问问{d}的报销到账没有，案件号{c}",
    "{f}我电话是{p}，有事打这个",
    "{f}{r}{d}走了，丧葬费咋领",
    "{f}养老金这个月少了{a}",
    "{f}能不能派个人{d}陪{r}去{h}",
    "{f}我想找人工",
    "{f}你好",
    "{f}好的谢谢",
    "{f}不用了",
    "{f}我要取消刚才那个申请",
    "{f}老年卡怎么办理啊",
    "{f}今天天气咋样",
    "my wife fell {e}, please send someone",
    "I paid 350 yuan for medicine {e}, can I get it back",
    "I called {e} about my case {c}",
]
ENGLISH_DATES = ["today", "yesterday", "last week", "on March 5", "next Monday"]
PHONES = ["13812345678", "138 1234 5678", "010-62345678", "+86 139 0000 1111"]
CASES = ["2026-000123", "2026 000456", "2026杠000789", "2026000321"]


def utterances(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        texts.append(
            rng.choice(TEMPLATES).format(
                f=rng.choice(FILLERS),
                r=rng.choice(RELATIONS),
                d=rng.choice(DATES),
                h=rng.choice(HOSPITALS_SAID),
                a=rng.choice(AMOUNTS),
                c=rng.choice(CASES),
                p=rng.choice(PHONES),
                e=rng.choice(ENGLISH_DATES),
            )
        )
    return texts


def percentile(sorted_values: list[float], share: float) -> float:
    index = min(len(sorted_values) - 1, round(share * (len(sorted_values) - 1)))
    return sorted_values[index]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20, help="timed passes over all utterances")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import nlu.entities as entities  # timed: the import compiles every expression

    import_ms = (time.perf_counter() - started) * 1000
    table = entities.load_hospital_table(HOSPITALS) if HOSPITALS.is_file() else {}
    tables = entities.EntityTables(hospitals=table)
    texts = utterances(args.utterances, args.seed)

    started = time.perf_counter()
    entities.extract_entities(texts[0], REFERENCE, tables)
    cold_us = (time.perf_counter() - started) * 1e6

    for text in texts:  # warm-up pass
        entities.extract_entities(text, REFERENCE, tables)
    samples: list[float] = []
    found = 0
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        order = texts[:]
        rng.shuffle(order)
        for text in order:
            started = time.perf_counter_ns()
            result = entities.extract_entities(text, REFERENCE, tables)
            samples.append((time.perf_counter_ns() - started) / 1000)
            found += len(result)
    samples.sort()

    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print(f"import nlu.entities: {import_ms:.0f} ms; hospital forms: {len(table)}")
    print(
        f"utterances: {len(texts)} (mean {statistics.fmean(len(t) for t in texts):.1f} chars), "
        f"rounds: {args.rounds}, entities per utterance: {found / len(samples):.2f}"
    )
    print(f"first call (cold): {cold_us:.0f} us")
    print(
        "per utterance: "
        f"median {statistics.median(samples):.1f} us, p90 {percentile(samples, 0.90):.1f} us, "
        f"p99 {percentile(samples, 0.99):.1f} us, max {samples[-1]:.1f} us"
    )
    _per_extractor(entities, texts, tables)


def _per_extractor(entities: object, texts: list[str], tables: object) -> None:
    """Mean time of each extractor over the utterances (one pass each, after the warm-up)."""
    day = REFERENCE.date()
    parts = {
        "amounts": lambda t: entities._AMOUNTS.extract(t),  # type: ignore[attr-defined]
        "dates": lambda t: entities._DATES.extract(t, day),  # type: ignore[attr-defined]
        "numbers": lambda t: entities._NUMBERS.extract(t),  # type: ignore[attr-defined]
        "lookups": lambda t: entities._LOOKUPS.extract(  # type: ignore[attr-defined]
            t,
            tables._hospital_table,  # type: ignore[attr-defined]
            tables._relation_table,  # type: ignore[attr-defined]
        ),
    }
    means = []
    for name, run in parts.items():
        started = time.perf_counter_ns()
        for _ in range(5):
            for text in texts:
                run(text)
        means.append(
            f"{name} {(time.perf_counter_ns() - started) / 1000 / (5 * len(texts)):.1f} us"
        )
    print("mean per extractor: " + ", ".join(means))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
