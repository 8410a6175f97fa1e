"""Notices: tell someone when a job has ended, durably.

A job asks with ``task.options(notify=[Webhook(url=...), Email(to=...)])``; each notice
becomes a follow-up job of the internal task ``offload.notify``, stored by the store in the
very step that makes the job final (``records.FollowUp``), so it is never lost and,
its id derived from the job's, never stored twice. The notice job then delivers,
retried along the Standard Webhooks schedule; its id is the ``webhook-id`` receivers
use to drop repeats.
"""

from offload.notices.specs import ON, Email, Webhook, notice_option, states_of_option

__all__ = ["ON", "Email", "Webhook", "notice_option", "states_of_option"]
