"""`manage.py check_worker_host`: whether this computer can run workers for a site whose web server
is on another computer (`make worker` asks it first). Says why not, in plain words, and exits 1."""
import sys

from django.core.management.base import BaseCommand

from dlsite.workers import worker_host_problems


class Command(BaseCommand):
    help = "Checks that this computer can run workers for a site on other computers; says why not and exits 1."

    def handle(self, *args, **options):
        problems = worker_host_problems()
        if problems:
            self.stderr.write("This computer cannot run the site's workers yet:\n"
                              + "".join(f"  - {problem}\n" for problem in problems)
                              + "Put these settings in the site's environment file (a copy of "
                                "deploy/dlsite.env.example), then try again.")
            sys.exit(1)
        self.stdout.write("This computer can run the site's workers: the job queue, the database and the "
                          "files are shared with the web server.")
