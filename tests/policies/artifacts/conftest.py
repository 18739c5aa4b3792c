"""Object-store fixtures (moto S3 on loopback, the OSS namespace proxy): see
tests/support/objectstores.py."""

from tests.support.objectstores import REGION, bucket, moto_url, oss_endpoint, s3_client

__all__ = ["REGION", "bucket", "moto_url", "oss_endpoint", "s3_client"]
