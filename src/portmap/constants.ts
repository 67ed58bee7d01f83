/** Portmapper v2 constants (RFC 1833 §3), with the RFC's names. */
export const PMAP_PROG = 100000;
export const PMAP_VERS = 2;
export const PMAP_PORT = 111;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const enum pmapproc {
  NULL = 0,
  SET = 1,
  UNSET = 2,
  GETPORT = 3,
  DUMP = 4,
  CALLIT = 5,
}

/** struct mapping { prog, vers, prot, port } */
export interface mapping {
  prog: number;
  vers: number;
  prot: number;
  port: number;
}
