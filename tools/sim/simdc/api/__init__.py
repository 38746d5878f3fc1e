"""The simulated datacenter's API service: VMAPI, CNAPI, NAPI, IMGAPI, SAPI.

One process, five HTTP servers (one per API, each on its own address as in
Triton where each API is its own zone), state in SQLite at $SIMDC_DIR/api.db.
Run as `cd tools/sim && /usr/bin/python3 -m simdc.api`.

One module per API (vmapi, cnapi, napi, imgapi, sapi) with its handlers and
ROUTES; base (errors, responses, requests), store (SQLite), server (HTTP,
the request log, main).

Responses are shaped after the Triton samples (restify headers, JSON bodies,
`{"code": ..., "message": ...}` errors). Only the subsets the migration tool,
the operator scripts and the simulator use are implemented.
"""
