"""The performance benchmark (`python -m jobs.benchmark`): our fast paths against their baselines, in one process.
Outside the library: pipeline/ never imports it.

Every timed comparison runs its two sides interleaved (A, B, A, B, ...) so that a change of machine load hits both;
each timed sample repeats the operation until it lasts at least `min_seconds`, and the reported figure is the median
over the samples of the per-pair ratio, with its interquartile range and min/max. Counts (input gradients of the
transfer stage, forwards and backwards of an adversarial training step) are measured with hooks on the models,
not taken from the code under test.

    comparison                    measured / reference                                     target
    fgsm_curve                    torchattacks FGSM once per ε + a scoring forward / ours  ≥ 3× faster
    fgsm                          torchattacks FGSM / ours (one ε)                         ≥ 1.0×
    adversarial_step              adversarial step (α = 0.5) / clean step                  ≤ 2.1×
    lightning_epoch               Lightning epoch / plain PyTorch loop, same work          ≤ 1.15×
    sweep                         (Σ job time / slots) / wall time, two-node Ray cluster,  ≥ 85 %
                                  the main experiment's 6 jobs
    transfer                      input gradients taken for M models and K ε               = M
    main_job                      wall time of `python -m jobs.sweep`                      ≤ 5 min
    auth                          the main job with Ray's token auth / with cluster.auth=false   (no target)

`--quick` shrinks everything for CI and judges no timing (only the counts). `--device cuda` adds the GPU extras:
a maxout epoch over 60,000 × 784 tensors and jobs per GPU with fractional packing (the packing itself also runs
on a logical Ray GPU without one: the tests do that).

Modules, one job each: sizes (constants, QUICK and FULL), timing (interleaved samples, statistics, comparison
entries), workload (models and batches), passes (hook counters), fgsm, training, transfer_count, sweeps (Ray and
the main job), gpu (the GPU extras), table (machine, Markdown table) and command (arguments, stages, main).
"""
from benchmarks.command import main

__all__ = ["main"]
