"""Fitting the artifacts fewrec ships: the chat's conversation prior, polarity weights and query
words, the shipped vectors (`python -m fewrec.fit.build_prior`, `build_polarity`,
`build_query_words`, `query_words`, `build_shipped`), the fusion weights (`fewrec tune`,
`tune.py`) and the chat's query weights (`chat_weights.py`, for `fewrec eval-chat`).

They choose or fit what the recommender then uses, on training or validation data only; they
are not evaluations, so they live apart from `fewrec/eval/`, which measures. They may use the
evaluation's statistics (its bootstrap intervals, its metrics): this layer sits above `eval`,
and nothing in `eval` imports it (the conversations' cross-validation is handed its prior
fitting, the chat evaluation its query-weight sweep, by the command line).
"""
