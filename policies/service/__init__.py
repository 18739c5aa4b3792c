"""The service every surface calls: decide -> audit intent -> approval -> run -> scrub
and truncate -> artifacts -> audit outcome (``core.ExecService``)."""
