#!/bin/sh
# Idempotent set-up of the `vouchers` bucket on the drop-minio Tenant:
# the bucket, its lifecycle rule, its event rule toward RabbitMQ, and the
# services' own least-privilege MinIO user. Safe to run again at any time.
set -eu

# MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, from the Tenant's configuration Secret.
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
cat >/tmp/lifecycle.json <<JSON
{"Rules": [{"ID": "expire-vouchers", "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "Expiration": {"Days": ${VOUCHER_EXPIRY_DAYS}}}]}
JSON
mc ilm rule import drop/vouchers </tmp/lifecycle.json

# Event rule: every created object goes to the AMQP target PRIMARY
# (MINIO_NOTIFY_AMQP_*_PRIMARY in the Tenant), i.e. exchange s3.events.
arn="arn:minio:sqs::PRIMARY:amqp"
if ! mc event ls drop/vouchers "$arn" | grep -q "$arn"; then
  mc event add drop/vouchers "$arn" --event put
fi

# The services' user: read and write objects in `vouchers`, nothing else.
mc admin policy create drop drop-vouchers /setup/vouchers-policy.json
mc admin user add drop "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
if ! mc admin user info drop "$AWS_ACCESS_KEY_ID" | grep -q drop-vouchers; then
  mc admin policy attach drop drop-vouchers --user "$AWS_ACCESS_KEY_ID"
fi
echo "vouchers bucket ready"
