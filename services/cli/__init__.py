"""`vocreg`: the command line of the people who run the platform, on its public gRPC API.

An institution's clerk uploads an exam session's results from a spreadsheet; a regulator's
officer reads the register and the certificates into a table, JSON or CSV; an ops engineer
checks a deployment with `vocreg doctor`. It is a gRPC client of the edge with the same tokens
as any other client: it never joins the bus as a worker, imports no eventlet, and declares no
SPEC (the registry lists it in NOT_SERVICES).

main.py parses and dispatches; config.py resolves flags, environment and the profile file;
client.py calls the edge and turns refusals into errors with exit codes (exits.py); output.py
prints answers; sheet.py reads and writes spreadsheets; upload.py is the resumable batch
upload; doctor.py the deployment checks. commands/ holds one small module per service (and one
per tool), found at start: a service's reads are added as its own module there.
"""
