"""An online office-document conversion service, offload's reference application.

A person uploads many files at once; each becomes a job of one batch, converted by
LibreOffice in a sandbox (no network, no other files) or by Pillow; when all have
ended, one job zips the results with a report and the person is e-mailed a signed link
that expires. ``python -m apps.convert`` runs it all on one machine (see the README).
"""
