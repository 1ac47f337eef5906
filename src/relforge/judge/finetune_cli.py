"""`relforge judge finetune` (registered on the judge sub-app by relforge.judge.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

from relforge.judge.finetune_config import FinetuneConfig

_D = FinetuneConfig()


def register_finetune(judge_app: typer.Typer) -> None:
    """Add the `finetune` command to the `relforge judge` sub-app."""

    @judge_app.command("finetune")
    def finetune(
        corpus: Path = typer.Option(..., "--corpus", help="BEIR corpus.jsonl."),
        queries: Path = typer.Option(..., "--queries", help="BEIR queries.jsonl."),
        qrels: Path = typer.Option(..., "--qrels", help="Human grades (BEIR TSV or TREC qrels)."),
        llm: str = typer.Option(..., "--llm", help="Base model: smollm2, hf:<dir|file.gguf|hub id>."),
        out: Path = typer.Option(..., "--out", help="Output adapter folder."),
        epochs: int = typer.Option(
            _D.epochs, "--epochs", help="Training epochs (best one by val tau_b is kept)."
        ),
        max_doc_tokens: int = typer.Option(
            _D.max_doc_tokens, "--max-doc-tokens", help="Document truncation (tokens)."
        ),
        lr: float = typer.Option(_D.lr, "--lr", help="Learning rate."),
        lora_r: int = typer.Option(_D.lora_r, "--lora-r", help="LoRA rank."),
        lora_alpha: int = typer.Option(_D.lora_alpha, "--lora-alpha", help="LoRA alpha."),
        lora_layers: int = typer.Option(
            _D.lora_layers or 0, "--lora-layers", help="LoRA on the top N layers only (0 = all layers)."
        ),
        balance: str = typer.Option(_D.balance, "--balance", help="none, downsample, upsample or weights."),
        max_per_class: int = typer.Option(
            _D.max_per_class or 0, "--max-per-class", help="Cap on training pairs per grade (0 = no cap)."
        ),
        loss: str = typer.Option(
            _D.loss, "--loss", help="choices (CE over grade labels) or lm (completion CE)."
        ),
        val_fraction: float = typer.Option(
            _D.val_fraction, "--val-fraction", help="Share of queries held out."
        ),
        query_field: str = typer.Option(
            _D.query_field, "--query-field", help="Query text field or metadata key."
        ),
        template: str = typer.Option(_D.template, "--template", help="Judge template id or YAML path."),
        batch_size: int = typer.Option(_D.batch_size, "--batch-size", help="Training batch size."),
        grad_accum: int = typer.Option(_D.grad_accum, "--grad-accum", help="Gradient accumulation steps."),
        seed: int = typer.Option(_D.seed, "--seed", help="Split, sampling and init seed."),
        merge: bool = typer.Option(_D.merge, "--merge", help="Also write a merged full model to OUT/merged."),
        qlora: bool = typer.Option(_D.qlora, "--qlora", help="4-bit base model (CUDA + bitsandbytes)."),
        no_judge_check: bool = typer.Option(
            False, "--no-judge-check", help="Skip the final `relforge judge` check."
        ),
        no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="write into a non-empty folder relforge did not create"
        ),
    ) -> None:
        """LoRA fine-tune an LLM judge on human grades (split by query, class balanced, per-epoch agreement)."""
        import json
        import shlex
        import sys

        from pydantic import ValidationError

        from relforge.data import read_corpus, read_qrels, read_queries
        from relforge.errors import MissingInputError, UsageError
        from relforge.judge.finetune import finetune_judge

        argv = sys.argv[1:]
        ctx_args = argv[argv.index("judge") :] if "judge" in argv else ["judge", "finetune", "..."]
        for flag, p in (("--corpus", corpus), ("--queries", queries), ("--qrels", qrels)):
            if not p.exists():
                raise MissingInputError(f"{flag} {p} does not exist")
        from relforge.outputs import claim_dir, guard_dir

        guard_dir(out, overwrite=overwrite)
        try:
            cfg = FinetuneConfig(
                epochs=epochs,
                max_doc_tokens=max_doc_tokens,
                lr=lr,
                lora_r=lora_r,
                lora_alpha=lora_alpha,
                lora_layers=lora_layers or None,
                balance=balance,
                max_per_class=max_per_class or None,
                loss=loss,
                val_fraction=val_fraction,
                query_field=query_field,
                template=template,
                batch_size=batch_size,
                grad_accum=grad_accum,
                seed=seed,
                merge=merge,
                qlora=qlora,
                judge_check=not no_judge_check,
            )
        except ValidationError as e:
            err = e.errors()[0]
            raise UsageError(
                f"invalid setting {'.'.join(str(x) for x in err['loc'])}={err.get('input')!r}: {err['msg']}"
            ) from None
        summary = finetune_judge(
            llm,
            read_corpus(corpus),
            read_queries(queries),
            read_qrels(qrels),
            claim_dir(out),
            cfg,
            progress=not no_progress,
            command="relforge " + " ".join(shlex.quote(str(a)) for a in ctx_args),
        )
        zs, best = summary.get("zero_shot") or {}, summary.get("best") or {}
        typer.echo(
            json.dumps(
                {
                    "out": str(out),
                    "best_epoch": summary["best_epoch"],
                    "class_counts": summary["class_counts"],
                    "zero_shot": {
                        k: zs.get(k) for k in ("kendall_tau_b", "quadratic_kappa", "accuracy", "macro_f1")
                    },
                    "tuned": {
                        k: best.get(k) for k in ("kendall_tau_b", "quadratic_kappa", "accuracy", "macro_f1")
                    },
                    "epoch_seconds": summary["timing"]["epoch_seconds"],
                },
                indent=2,
            )
        )
