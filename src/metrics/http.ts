/**
 * The /metrics HTTP listener: GET (or HEAD) /metrics answers the Prometheus text format, any other
 * path 404, any other method on /metrics 405. Malformed requests get a 400 from the parser's
 * clientError hook and the socket is closed; nothing a client sends can throw out of here.
 */
import http from 'node:http';
import type net from 'node:net';
import type { GvMetrics } from './registry.js';

export interface MetricsServerOptions {
  /** Where unexpected failures (a collector throwing) are reported. */
  log?: (obj: object, msg: string) => void;
  maxConnections?: number;
}

export class MetricsServer {
  private readonly server: http.Server;
  private readonly log: (obj: object, msg: string) => void;

  constructor(
    private readonly metrics: GvMetrics,
    opts: MetricsServerOptions = {},
  ) {
    this.log = opts.log ?? (() => {});
    this.server = http.createServer(
      {
        // A scraper sends a few hundred bytes; anything slow or large is not one.
        maxHeaderSize: 16 * 1024,
        requestTimeout: 10_000,
        headersTimeout: 5_000,
        keepAliveTimeout: 5_000,
      },
      (req, res) => this.answer(req, res),
    );
    this.server.maxConnections = opts.maxConnections ?? 64;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      if (err.code !== 'ECONNRESET' && socket.writable && !socket.destroyed) {
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
  }

  /** Listen on host:port; resolves with the bound port (0 picks a free one). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.log({ err: String(err) }, 'metrics listener error'));
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stop listening and drop open scrape connections. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        this.server.closeAllConnections();
        resolve();
        return;
      }
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.on('error', () => res.destroy());
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== '/metrics') {
      plain(res, 404, 'not found: the only path served here is /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      plain(res, 405, 'method not allowed: use GET\n');
      return;
    }
    this.metrics.metrics().then(
      (text) => {
        if (res.destroyed) return;
        res.statusCode = 200;
        res.setHeader('Content-Type', this.metrics.contentType);
        res.setHeader('Content-Length', Buffer.byteLength(text));
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        this.log({ err: err instanceof Error ? err.stack : String(err) }, 'metrics collection failed');
        if (!res.destroyed && !res.headersSent) plain(res, 500, 'metrics collection failed\n');
      },
    );
  }
}

function plain(res: http.ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}
