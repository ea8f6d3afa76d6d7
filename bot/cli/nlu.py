"""`hotline nlu ...`: parse, train and evaluate the understanding of what retirees say."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from bot.cli.common import current_settings, fail

app = typer.Typer(
    help="Understanding what retirees say (intents and entities).", no_args_is_help=True
)


@app.command("parse")
def parse_command(
    text: str | None = typer.Argument(
        None, help="The text; without it, one utterance per input line, one JSON line out each."
    ),
) -> None:
    """Print the parse of TEXT as Rasa's /model/parse JSON."""
    from nlu.parser import get_parser

    parser = get_parser(current_settings())
    if text is not None:
        typer.echo(json.dumps(parser.parse(text), ensure_ascii=False))
        return
    for line in sys.stdin:
        typer.echo(json.dumps(parser.parse(line.rstrip("\r\n")), ensure_ascii=False))
        sys.stdout.flush()


@app.command("train")
def train_command() -> None:
    """Train the embedded parser on nlu/data and cache it (also done on first use)."""
    from nlu.embedded import EmbeddedParser

    settings = current_settings()
    parser = EmbeddedParser.train(settings)
    typer.echo(f"trained on {parser.example_count} examples; cached in {settings.nlu_cache_dir}")


@app.command("evaluate")
def evaluate_command(
    data: Path | None = typer.Option(
        None, "--data", help="Rasa YAML test data (default: the held-out set nlu/data/test/)."
    ),
    min_accuracy: float | None = typer.Option(
        None, "--min-accuracy", min=0.0, max=1.0, help="Exit 1 when accuracy is below this."
    ),
) -> None:
    """Accuracy, per-intent precision/recall/F1, confusion matrix and the misclassified examples."""
    from nlu.evaluate import evaluate, format_report
    from nlu.parser import get_parser
    from nlu.training_data import TrainingDataError, held_out_files, load_training_data

    settings = current_settings()
    try:
        examples = load_training_data([data] if data else held_out_files(settings))
    except TrainingDataError as exc:
        fail(str(exc))
    report = evaluate(get_parser(settings), examples)
    typer.echo(format_report(report))
    if min_accuracy is not None and report.accuracy < min_accuracy:
        fail(f"accuracy {report.accuracy:.3f} is below the minimum {min_accuracy:.3f}")
