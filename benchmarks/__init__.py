"""Speed benchmarks of omnispeech against the transformers reference (run as modules).

Each benchmark prints one JSON object and rewrites its own section of ``RESULTS.md``; see
:mod:`benchmarks.common` for the shared timing and reporting helpers.
"""
