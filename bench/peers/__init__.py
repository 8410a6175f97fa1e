"""The peers' benchmark applications, each in its documented setup.

PostgreSQL: procrastinate and SAQ. Redis: Celery, RQ, Dramatiq, Huey, arq, SAQ, TaskIQ.
"""
