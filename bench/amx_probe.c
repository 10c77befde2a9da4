/* AMX tile throughput on one core: resident-tile tdpbf16ps (the kernel's four 16×16×32 products per k step),
 * then with the tile loads of a 32 × 256 × 32 block. Not part of the build (bench/RESULTS.md, bf16 section):
 *   clang -O2 bench/amx_probe.c -o /tmp/amx_probe && /tmp/amx_probe */
#include <immintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
typedef struct { uint8_t palette, start_row, r[14]; uint16_t colsb[16]; uint8_t rows[16]; } cfg_t;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
__attribute__((target("amx-tile,amx-bf16"))) int main(void){
  if (syscall(SYS_arch_prctl, 0x1023, 18)) { puts("no perm"); return 1; }
  cfg_t c; memset(&c,0,sizeof c); c.palette=1; for(int t=0;t<8;t++){c.colsb[t]=64;c.rows[t]=16;}
  _tile_loadconfig(&c);
  static uint16_t a[16*32*2] __attribute__((aligned(64))); static float ct[16*16*4] __attribute__((aligned(64)));
  for(int i=0;i<1024;i++) a[i]=0x3f80;
  _tile_loadd(4,a,64); _tile_loadd(5,a,64); _tile_loadd(6,a,64); _tile_loadd(7,a,64);
  _tile_zero(0);_tile_zero(1);_tile_zero(2);_tile_zero(3);
  long n=2000000; double t0=now();
  for(long i=0;i<n;i++){ _tile_dpbf16ps(0,4,6);_tile_dpbf16ps(1,4,7);_tile_dpbf16ps(2,5,6);_tile_dpbf16ps(3,5,7);}
  double t=now()-t0; _tile_stored(0,ct,64);
  printf("resident: %.1f GFLOP/s (%.2f ns per tdp) %f\n", n*4*16*16*32*2/t/1e9, t/(n*4)*1e9, ct[0]);
  /* with loads from L1 each step */
  static uint16_t A[32*512] __attribute__((aligned(64))), B[512*32] __attribute__((aligned(64)));
  for(int i=0;i<32*512;i++){A[i]=0x3f80;B[i]=0x3f80;}
  long kp=256; n=200000; t0=now();
  for(long i=0;i<n;i++){ for(long k=0;k<kp;k+=32){
    _tile_loadd(4,A+k,kp*2); _tile_loadd(5,A+16*kp+k,kp*2); _tile_loadd(6,B+k*32,128); _tile_loadd(7,B+k*32+32,128);
    _tile_dpbf16ps(0,4,6);_tile_dpbf16ps(1,4,7);_tile_dpbf16ps(2,5,6);_tile_dpbf16ps(3,5,7);} }
  t=now()-t0;
  printf("with loads kp=256: %.1f GFLOP/s\n", n*(kp/32)*4*16*16*32*2.0/t/1e9);
  _tile_release(); return 0; }
