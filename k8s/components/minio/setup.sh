#!/bin/sh
# Idempotent set-up of the `vouchers` bucket on the drop-minio Tenant:
# the bucket, its lifecycle rule, its event rule toward RabbitMQ, and the
# services' own least-privilege MinIO user. Safe to run again at any time.
# Plain POSIX sh and mc only: the mc image has no grep.
set -eu

# MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, from the Tenant's configuration Secret
# (mounted in the Job's container only, so there is nothing to follow here).
# shellcheck source=/dev/null
. /minio-config/config.env

export MC_CONFIG_DIR=/tmp/mc
export MC_HOST_drop="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio.drop.svc"

until mc ready drop; do
  echo "waiting for the MinIO tenant..."
  sleep 5
done

mc mb --ignore-existing drop/vouchers

# Lifecycle: vouchers expire VOUCHER_EXPIRY_DAYS after upload. Importing the
# whole configuration replaces the previous one, so a new value just applies.
case "$VOUCHER_EXPIRY_DAYS" in
  '' | *[!0-9]*) echo "VOUCHER_EXPIRY_DAYS must be a whole number of days" >&2; exit 2 ;;
esac
cat >/tmp/lifecycle.json <<JSON
{"Rules": [{"ID": "expire-vouchers", "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "Expiration": {"Days": ${VOUCHER_EXPIRY_DAYS}}}]}
JSON
mc ilm rule import drop/vouchers </tmp/lifecycle.json

# Event rule: every created object goes to the AMQP target PRIMARY
# (MINIO_NOTIFY_AMQP_*_PRIMARY in the Tenant), i.e. exchange s3.events.
mc event add --ignore-existing drop/vouchers "arn:minio:sqs::PRIMARY:amqp" --event put

# The services' user: read and write objects in `vouchers`, nothing else.
mc admin policy create drop drop-vouchers /setup/vouchers-policy.json
mc admin user add drop "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
info=$(mc admin user info drop "$AWS_ACCESS_KEY_ID")
case "$info" in
  *drop-vouchers*) ;;
  *) mc admin policy attach drop drop-vouchers --user "$AWS_ACCESS_KEY_ID" ;;
esac
echo "vouchers bucket ready"
