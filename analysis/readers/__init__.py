"""One module per input format. A trace reader (`nsys`, `kineto`) says whether it `claims` a path and `read`s it
into a `raw_trace.RawTrace`; analysis.frames asks its READERS in turn. `kineto` streams its JSON through
`json_stream` in batches of events into rows (`kineto_events`), times rounded by `json_times`; `memory` refuses a
trace too large for the memory at hand before it is read. `ncu` reads Nsight Compute's CSV of bytes per kernel,
`compressed` the packed files any of them may be given, `capture_meta` the metadata gapprof writes into a trace."""
