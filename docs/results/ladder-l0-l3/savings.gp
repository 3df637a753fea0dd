# savings.gp: plots savings.dat. Rendered by scalinglab report with
#   gnuplot -e "set terminal pdfcairo size 5in,3.4in font 'Sans,10'; set output 'savings.pdf'" savings.gp
#   gnuplot -e "set terminal pngcairo size 1100,750 font 'Sans,13'; set output 'savings.png'" savings.gp
# (run in this directory); restyle here and rerun.
set encoding utf8
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set key outside right top spacing 1.1 box lc rgb '#bbbbbb'
set format x '10^{%L}'
set logscale x
set xrange [569429:1.05e+11]
set yrange [0:12.8359]
set xlabel 'non-embedding parameters N'
set ylabel 'token savings S(N) = D_{dense} / D_{hybrid}'
set title 'Token savings at L* = 0.7409 nats/token'
set object 1 rect from 854144, graph 0 to 1.59893e+07, graph 1 fc rgb '#eeeeee' fs solid 1.0 noborder behind
set label 1 'trained' at 3.69556e+06, graph 0.95 center tc rgb '#555555'
set arrow 1 from 7e+09, graph 0 to 7e+09, graph 1 nohead dt 3 lc rgb '#999999'
set arrow 2 from 7e+10, graph 0 to 7e+10, graph 1 nohead dt 3 lc rgb '#999999'
set label 2 'N = 7e9' at 7e+09, graph 0.95 right offset -0.5,0
set label 3 'N = 7e10' at 7e+10, graph 0.88 right offset -0.5,0
plot 'savings.dat' index 0 using 1:3:4 with filledcurves fc rgb '#9ecae1' fs transparent solid 0.5 title '95% CI (bootstrap)', \
     '' index 0 using 1:2 with lines lw 2 lc rgb '#08519c' title 'S(N)', \
     '' index 1 using 1:2:3:4 with yerrorbars pt 7 lc rgb 'black' title 'reported N', \
     1 with lines dt 2 lc rgb '#666666' title 'S = 1'
