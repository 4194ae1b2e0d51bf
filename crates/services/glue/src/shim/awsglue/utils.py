"""tsumiki's stand-in for awsglue.utils in Python shell jobs: getResolvedOptions reads the
job's `--key value` arguments as AWS Glue's own does."""

import argparse

_RESERVED = (
    "JOB_NAME",
    "JOB_ID",
    "JOB_RUN_ID",
    "SECURITY_CONFIGURATION",
    "encryption_type",
    "TempDir",
    "RedshiftTempDir",
)


class GlueArgumentError(Exception):
    pass


class GlueArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise GlueArgumentError(message)


def getResolvedOptions(args, options):
    parser = GlueArgumentParser(add_help=False)
    parser.add_argument("--job-bookmark-option", dest="job_bookmark_option", required=False)
    for name in _RESERVED:
        parser.add_argument("--" + name, dest=name, required=False)
    for name in options:
        if name not in _RESERVED:
            parser.add_argument("--" + name, dest=name, required=True)
    parsed, _ = parser.parse_known_args(args[1:])
    return vars(parsed)
