// Example Kubecord worker in Node.js.
//
// It joins the consumer group "ping-node" on every gateway pod, answers
// "!ping" with "pong from Node.js" through the REST service, and acks every
// event after handling it. The .proto files are loaded at run time from
// proto/ (no code generation step).
//
// Configuration (environment): KUBECORD_GATEWAYS (comma-separated host:port),
// KUBECORD_REST_ADDR, KUBECORD_AUTH_SECRET (optional), KUBECORD_GROUP.
'use strict';

const path = require('path');
const os = require('os');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = process.env.KUBECORD_PROTO_ROOT || path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(
  ['kubecord/gateway/v1/gateway.proto', 'kubecord/rest/v1/rest.proto'],
  { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const pkg = grpc.loadPackageDefinition(definition);
const { GatewayService } = pkg.kubecord.gateway.v1;
const { RestService } = pkg.kubecord.rest.v1;

const log = (...args) => console.error('[ping-node]', ...args);

const gateways = (process.env.KUBECORD_GATEWAYS || '').split(',').map((s) => s.trim()).filter(Boolean);
const restAddr = process.env.KUBECORD_REST_ADDR || '';
if (gateways.length === 0 || !restAddr) {
  log('set KUBECORD_GATEWAYS (host:port, comma-separated) and KUBECORD_REST_ADDR');
  process.exit(2);
}
const group = process.env.KUBECORD_GROUP || 'ping-node';
const metadata = new grpc.Metadata();
if (process.env.KUBECORD_AUTH_SECRET) {
  metadata.set('authorization', `Bearer ${process.env.KUBECORD_AUTH_SECRET}`);
}
const rest = new RestService(restAddr, grpc.credentials.createInsecure());
let stopping = false;
const streams = new Set();

// handle answers !ping; it resolves once the event is handled.
function handle(event) {
  if (event.payload !== 'message_create') return Promise.resolve();
  const msg = event.message_create.message;
  if ((msg.author && msg.author.bot) || msg.content.trim().toLowerCase() !== '!ping') return Promise.resolve();
  const req = {
    channel_id: msg.channel_id,
    content: 'pong from Node.js',
    message_reference: { message_id: msg.id, channel_id: msg.channel_id },
  };
  return new Promise((resolve, reject) => {
    rest.CreateMessage(req, metadata, { deadline: Date.now() + 10000 }, (err) => (err ? reject(err) : resolve()));
  });
}

// consume keeps one Consume stream to a gateway pod, reconnecting with backoff.
function consume(target, backoff = 100) {
  if (stopping) return;
  const client = new GatewayService(target, grpc.credentials.createInsecure());
  const call = client.Consume(metadata);
  streams.add(call);
  call.write({
    subscribe: {
      group,
      member_id: `${os.hostname()}-${process.pid}`,
      event_names: ['MESSAGE_CREATE'],
      max_in_flight: 64,
      max_batch: 64,
    },
  });
  call.on('data', (resp) => {
    if (resp.kind === 'subscribed') {
      log('joined group', group, 'on', target, 'gateway', resp.subscribed.gateway_id);
      backoff = 100;
    } else if (resp.kind === 'delivery' || resp.kind === 'delivery_batch') {
      // A batch carries several deliveries in order (max_batch): handle them one
      // after another, then ack them all in one message.
      const ds = resp.kind === 'delivery' ? [resp.delivery] : resp.delivery_batch.deliveries;
      (async () => {
        for (const d of ds) {
          await handle(d.event).catch((err) => log('handler failed:', err.code, err.details || err.message));
        }
      })().finally(() => {
        if (!stopping) call.write({ ack: { delivery_ids: ds.map((d) => d.delivery_id) } });
      });
    } else if (resp.kind === 'gap') {
      log('gateway lost', resp.gap.lost, 'events for this group');
    }
  });
  const retry = (why) => {
    streams.delete(call);
    client.close();
    if (stopping) return;
    log('stream to', target, 'ended:', why, `(retrying in ${backoff} ms)`);
    setTimeout(() => consume(target, Math.min(backoff * 2, 5000)), backoff);
  };
  call.on('error', (err) => retry(`${err.code} ${err.details}`));
  call.on('end', () => retry('closed by the gateway'));
}

function stop() {
  if (stopping) return;
  stopping = true;
  log('stopping');
  for (const call of streams) call.end();
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

log('running; gateways', gateways.join(','));
for (const g of gateways) consume(g);
