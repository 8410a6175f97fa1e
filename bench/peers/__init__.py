"""The peers' benchmark applications (procrastinate and SAQ), each in its documented setup."""
